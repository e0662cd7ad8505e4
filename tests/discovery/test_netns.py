"""Real multicast between network namespaces: an agent on one host, ``wot-agents discover`` on
another, joined by veth pairs on a bridge (see conftest.py). Skipped where namespaces cannot be
made (not root, no iproute2, a container without CAP_NET_ADMIN)."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

from .conftest import Lan, agent_host, wot_agents


def is_event(kind: str, name: str | None = None) -> Any:
    return lambda line: line.get("event") == kind and (name is None or line.get("name") == name)


async def test_an_agent_is_discovered_updated_and_removed_from_another_host(lan: Lan, spawn: Any) -> None:
    agent_ns, browser_ns = lan.hosts
    browser = await spawn(browser_ns.command(*wot_agents("discover", "--json", "--watch")))
    agent = await spawn(agent_ns.command(*agent_host("--title", f"Netns {secrets.token_hex(3)}")))
    (name,) = (await agent.expect(is_event("announced"), within=15))["names"]

    added = await browser.expect(is_event("added", name), within=10)
    assert added["valid"] is True and added["error"] is None, added["error"]
    assert added["type"] == "Thing" and added["td"] == "/.well-known/wot"
    assert added["url"].startswith(f"http://{agent_ns.address}:")
    assert agent_ns.address in added["addresses"] and agent_ns.address6 in added["addresses"]
    assert added["description"]["description"] == "test thing, revision 0"

    await agent.send("update")
    updated = await browser.expect(is_event("updated", name), within=10)
    assert updated["description"]["description"] == "test thing, revision 1"

    await agent.send("stop")
    await browser.expect(is_event("removed", name), within=5)
    await agent.expect(is_event("stopped"), within=5)


async def test_the_td_is_fetched_over_ipv6_when_ipv4_is_refused(lan: Lan, spawn: Any) -> None:
    agent_ns, browser_ns = lan.hosts
    browser = await spawn(browser_ns.command(*wot_agents("discover", "--json", "--watch")))
    title = f"Six {secrets.token_hex(3)}"
    agent = await spawn(agent_ns.command(*agent_host("--title", title, "--host", agent_ns.address6)))
    (name,) = (await agent.expect(is_event("announced"), within=15))["names"]
    added = await browser.expect(is_event("added", name), within=10)
    assert added["valid"] is True
    assert added["url"].startswith(f"http://[{agent_ns.address6}]:")


async def test_the_same_title_on_two_hosts_gets_two_names(lan: Lan, spawn: Any) -> None:
    title = f"Twin {secrets.token_hex(3)}"
    first = await spawn(lan.hosts[0].command(*agent_host("--title", title)))
    (first_name,) = (await first.expect(is_event("announced"), within=15))["names"]
    second = await spawn(lan.hosts[1].command(*agent_host("--title", title)))
    (second_name,) = (await second.expect(is_event("announced"), within=15))["names"]
    assert first_name == f"{title}._wot._tcp.local."
    assert second_name == f"{title}-2._wot._tcp.local."


async def test_discover_lists_what_it_found_when_the_time_is_up(lan: Lan, spawn: Any) -> None:
    agent_ns, browser_ns = lan.hosts
    title = f"Listed {secrets.token_hex(3)}"
    agent = await spawn(agent_ns.command(*agent_host("--title", title, "--count", "3")))
    names = (await agent.expect(is_event("announced"), within=15))["names"]
    proc = await asyncio.create_subprocess_exec(
        *browser_ns.command(*wot_agents("discover", "--json", "--timeout", "2")),
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    found = {entry["name"]: entry for entry in json.loads(stdout)}
    assert set(names) <= set(found)
    assert all(found[name]["valid"] for name in names)

    proc = await asyncio.create_subprocess_exec(
        *browser_ns.command(*wot_agents("discover", "--timeout", "2")),
        stdout=asyncio.subprocess.PIPE,
    )
    text, _ = await asyncio.wait_for(proc.communicate(), 20)
    lines = [line for line in text.decode().splitlines() if title in line]
    assert len(lines) == 3 and all("[Thing]" in line and "id=urn:" in line for line in lines)
