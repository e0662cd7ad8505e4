"""``agent.serve(announce=True, directory=URL)``: an SDK agent announces itself and stays
registered while served, and withdraws both when it stops."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

from discovery import Browser
from wot_agents import Agent

from .conftest import Lan, wot_agents
from .test_directory import directory_on, eventually, stored, until_stored
from .test_loopback import LOOPBACK, next_event

SDK_AGENT = Path(__file__).with_name("sdk_agent.py")


def weather(title: str) -> Agent:
    agent = Agent(title, description="answers with the weather")

    @agent.action(safe=True)
    async def forecast(city: str) -> str:
        """Tells tomorrow's weather for a city."""
        return f"sunny in {city}"

    return agent


async def test_a_served_agent_is_announced_registered_and_withdrawn() -> None:
    agent = weather(f"Served {secrets.token_hex(3)}")
    async with directory_on() as port, Browser(interfaces=LOOPBACK) as browser:
        url = f"http://127.0.0.1:{port}"
        serving = agent.serve(http=True, announce=True, directory=url, registration_ttl=5)
        async with serving as running:
            name = f"{agent.title}._wot._tcp.local."
            added = await next_event(browser, name)
            assert added.agent.ok and added.agent.description is not None
            assert added.agent.description.id == agent.id
            assert added.agent.url == running.td_url
            await until_stored(url, agent.id, within=5)

            agent.info = "now also answers with the pollen count"
            await running.refresh()
            updated = await next_event(browser, name)
            assert updated.kind == "updated" and updated.agent.description is not None
            assert updated.agent.description.description == agent.info

            async def registered_anew() -> bool:
                return ((await stored(url, agent.id)) or {}).get("description") == agent.info

            await eventually(registered_anew, within=3)
        assert (await next_event(browser, name)).kind == "removed"
        assert await stored(url, agent.id) is None


async def test_an_sdk_agent_is_found_by_wot_agents_discover_on_another_host(lan: Lan, spawn: Any) -> None:
    agent_ns, browser_ns = lan.hosts
    title = f"Sdk {secrets.token_hex(3)}"
    browser = await spawn(browser_ns.command(*wot_agents("discover", "--json", "--watch")))
    agent = await spawn(agent_ns.command(sys.executable, str(SDK_AGENT), title))
    serving = await agent.expect(lambda line: line.get("event") == "serving", within=15)
    added = await browser.expect(lambda line: line.get("name") == f"{title}._wot._tcp.local.", within=10)
    assert added["event"] == "added" and added["valid"] is True, added["error"]
    assert added["description"]["id"] == serving["id"]
    assert added["url"].startswith(f"http://{agent_ns.address}:")
    stderr = await agent.stop()  # Ctrl-C: a clean shutdown says goodbye
    assert not agent.killed, f"the agent did not end within 30 s of Ctrl-C:\n{stderr[-4000:]}"
    # Its goodbye travels through two processes that a loaded machine runs late: a bound, no timing.
    await browser.expect(lambda line: line.get("event") == "removed", within=30)
