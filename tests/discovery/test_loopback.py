"""Announce and browse over real multicast on the loopback interface, in one process.

The variant for machines without network namespaces: mDNS confined to 127.0.0.1. Every title
carries a random token, so other test runs on the same machine cannot be mistaken for ours.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from zeroconf import ServiceInfo

from discovery import Announcer, Browser, DiscoveredAgent, DiscoveryEvent
from discovery._net import open_zeroconf
from tests.discovery.conftest import wot_agents
from tests.servers import eventually, http_server, serving

LOOPBACK = ["127.0.0.1"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def thing(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "@context": "https://www.w3.org/2022/wot/td/v1.1",
        "id": f"urn:test:{title.replace(' ', '-')}",
        "title": title,
        "security": "nosec",
        "securityDefinitions": {"nosec": {"scheme": "nosec"}},
        **extra,
    }


@pytest.fixture
def token() -> str:
    return secrets.token_hex(4)


async def next_event(browser: Browser, name: str, *, within: float = 5) -> DiscoveryEvent:
    """The next event about ``name``, skipping others (another run may share the loopback)."""
    async with asyncio.timeout(within):
        async for event in browser:
            if event.agent.name == name:
                return event
    raise AssertionError("browser closed")


async def seen(browser: Browser, name: str, *, within: float) -> DiscoveredAgent:
    async with asyncio.timeout(within):
        return await browser.wait_for(name)


async def test_announce_browse_update_remove(token: str) -> None:
    document = thing(f"Weather {token}")
    async with (
        http_server({"/.well-known/wot": serving(document)}) as port,
        Browser(interfaces=LOOPBACK) as browser,
        Announcer(document, port=port, interfaces=LOOPBACK) as announcer,
    ):
        assert announcer.name == f"Weather {token}._wot._tcp.local."
        added = await next_event(browser, announcer.name)
        assert added.kind == "added"
        assert added.agent.ok and added.agent.description is not None
        assert added.agent.description.title == f"Weather {token}"
        assert added.agent.url == f"http://127.0.0.1:{port}/.well-known/wot"
        announcement = added.agent.announcement
        assert announcement.kind == "Thing" and announcement.addresses == ("127.0.0.1",)
        assert browser.agents[announcer.name] == added.agent

        document["description"] = "now with a forecast"
        await announcer.update(document)
        updated = await next_event(browser, announcer.name)
        assert updated.kind == "updated"
        assert updated.agent.description is not None
        assert updated.agent.description.description == "now with a forecast"

        name = announcer.name
        await announcer.aclose()
        removed = await next_event(browser, name)
        assert removed.kind == "removed" and name not in browser.agents


async def test_same_title_gets_a_distinct_instance_name(token: str) -> None:
    document = thing(f"Twin {token}")
    shared = open_zeroconf(LOOPBACK)
    announcers = [
        Announcer(document, port=1001, interfaces=LOOPBACK),
        Announcer(document, port=1002, interfaces=LOOPBACK),
        Announcer(document, port=1003, zeroconf=shared),
    ]
    try:
        for announcer in announcers:  # one after the other: each must see the earlier ones
            await announcer.start()
        names = [announcer.name for announcer in announcers]
        assert names == [
            f"Twin {token}._wot._tcp.local.",
            f"Twin {token}-2._wot._tcp.local.",
            f"Twin {token}-3._wot._tcp.local.",
        ]
    finally:
        for announcer in announcers:
            await announcer.aclose()
        await shared.async_close()


async def test_a_directory_is_found_under_its_subtype_and_a_thing_is_not(token: str) -> None:
    directory = thing(f"Directory {token}", **{"@type": "ThingDirectory"})
    plain = thing(f"Lamp {token}")
    routes = {"/dir": serving(directory), "/lamp": serving(plain)}
    async with (
        http_server(routes) as port,
        Browser(interfaces=LOOPBACK, directories_only=True) as directories,
        Browser(interfaces=LOOPBACK) as everything,
        Announcer(directory, port=port, td_path="/dir", interfaces=LOOPBACK) as announced_dir,
        Announcer(plain, port=port, td_path="/lamp", interfaces=LOOPBACK) as announced_lamp,
    ):
        assert announced_dir.kind == "Directory"
        found = await next_event(directories, str(announced_dir.name))
        assert found.agent.announcement.kind == "Directory" and found.agent.ok
        assert (await seen(everything, str(announced_dir.name), within=5)).announcement.kind == "Directory"
        assert (await seen(everything, str(announced_lamp.name), within=5)).announcement.kind == "Thing"
        assert announced_lamp.name not in directories.agents


async def test_hostile_announcers_cannot_hang_or_crash_the_browser(token: str) -> None:
    """Each broken TD endpoint ends up in the view with its reason, within the fetch timeout."""
    never = asyncio.Event()

    async def hangs(request: web.Request) -> web.StreamResponse:
        await never.wait()
        raise AssertionError("unreachable")

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(10_000):
            await response.write(b" " * 65536)
        return response

    async def not_json(request: web.Request) -> web.StreamResponse:
        return web.Response(text="{ nope", content_type="application/json")

    async def redirects(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("http://192.0.2.1/td")

    invalid = thing(f"Invalid {token}")
    del invalid["securityDefinitions"]
    good = thing(f"Good {token}")
    cases = {
        "/hangs": (hangs, "no complete TD"),
        "/endless": (endless, "larger than the limit"),
        "/not-json": (not_json, "not valid JSON"),
        "/redirects": (redirects, "answered 302"),
        "/invalid": (serving(invalid), "securityDefinitions"),
    }
    routes: dict[str, Handler] = {path: handler for path, (handler, _) in cases.items()}
    routes["/good"] = serving(good)
    async with http_server(routes) as port, Browser(interfaces=LOOPBACK, fetch_timeout=1.0) as browser:
        announcers = [
            Announcer(thing(f"{path[1:]} {token}"), port=port, td_path=path, interfaces=LOOPBACK)
            for path in routes
        ]
        try:
            await asyncio.gather(*(announcer.start() for announcer in announcers))
            views = {
                path: await seen(browser, str(announcer.name), within=8)
                for path, announcer in zip(routes, announcers, strict=True)
            }
        finally:
            never.set()
            await asyncio.gather(*(announcer.aclose() for announcer in announcers))
    assert views["/good"].ok
    for path, (_, reason) in cases.items():
        assert not views[path].ok and views[path].description is None, path
        assert reason in str(views[path].error), (path, views[path].error)


async def test_announcements_that_break_the_rules_are_ignored(
    token: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = thing(f"Fine {token}")
    zc = open_zeroconf(LOOPBACK)
    bad = [
        {"type": "Thing"},  # no td
        {"td": "//192.0.2.1/td"},  # another host
        {"td": "/td", "scheme": "gopher"},
    ]
    infos = [
        ServiceInfo(
            "_wot._tcp.local.",
            f"Bad{index} {token}._wot._tcp.local.",
            port=9,
            properties=txt,
            server=f"bad{index}-{token}.local.",
            parsed_addresses=LOOPBACK,
        )
        for index, txt in enumerate(bad)
    ]
    try:
        async with (
            http_server({"/.well-known/wot": serving(good)}) as port,
            Browser(interfaces=LOOPBACK) as browser,
        ):
            for info in infos:
                await zc.async_register_service(info, cooperating_responders=True)
            async with Announcer(good, port=port, interfaces=LOOPBACK) as announcer:
                await seen(browser, str(announcer.name), within=5)
                # Every bad one was looked at (and logged as ignored) before the check below.
                await eventually(
                    lambda: all(f"ignoring Bad{index} {token}" in caplog.text for index in range(len(bad))),
                    within=5,
                )
                assert not [name for name in browser.agents if name.startswith("Bad")]
    finally:
        await zc.async_close()


async def test_closing_the_browser_while_a_fetch_hangs_is_prompt(token: str) -> None:
    started = asyncio.Event()
    never = asyncio.Event()

    async def hangs(request: web.Request) -> web.StreamResponse:
        started.set()
        await never.wait()
        raise AssertionError("unreachable")

    async with http_server({"/td": hangs}) as port:
        browser = Browser(interfaces=LOOPBACK, fetch_timeout=30)
        await browser.start()
        async with Announcer(thing(f"Slow {token}"), port=port, td_path="/td", interfaces=LOOPBACK):
            await asyncio.wait_for(started.wait(), 5)
            async with asyncio.timeout(2):
                await browser.aclose()
                async for _ in browser:  # what was queued, then the end: iteration stops once closed
                    pass
        never.set()


async def test_a_flood_of_announcements_is_capped(token: str, caplog: pytest.LogCaptureFixture) -> None:
    """The view holds at most max_agents services, however many are announced."""
    document = thing(f"Flood {token}")
    zc = open_zeroconf(LOOPBACK)
    infos = [
        ServiceInfo(
            "_wot._tcp.local.",
            f"Flood{index} {token}._wot._tcp.local.",
            port=9,
            properties={"td": "/td"},
            server=f"flood-{token}.local.",
            parsed_addresses=LOOPBACK,
        )
        for index in range(12)
    ]
    try:
        async with (
            http_server({"/td": serving(document)}) as port,
            Browser(interfaces=LOOPBACK, max_agents=5, fetch_timeout=5) as browser,
        ):
            for info in infos:
                info.port = port
                await zc.async_register_service(info, cooperating_responders=True)
            # 5 in the view, 5 waiting for room: the 2 beyond are dropped (and logged) once all 12
            # have arrived. A view without its bound would drop none, and this wait would fail.
            dropped = f" {token}._wot._tcp.local.: the view holds 5"
            await eventually(lambda: caplog.text.count(dropped) >= 2, within=10)
            mine = [name for name in browser.agents if token in name]
            assert 0 < len(mine) <= 5
    finally:
        await zc.async_close()


async def test_an_agent_that_dies_without_goodbye_turns_unusable_and_back(token: str) -> None:
    """No goodbye, so mDNS caches keep the service: the recheck notices the TD is gone."""
    document = thing(f"Mortal {token}")
    routes = {"/.well-known/wot": serving(document)}
    server = AsyncExitStack()
    port = await server.enter_async_context(http_server(routes))
    try:
        async with (
            Browser(interfaces=LOOPBACK, recheck_interval=0.3, fetch_timeout=5) as browser,
            Announcer(document, port=port, interfaces=LOOPBACK) as announcer,
        ):
            name = str(announcer.name)
            assert (await next_event(browser, name)).agent.ok
            await server.aclose()  # the agent's server dies; its announcement lives on
            gone = await next_event(browser, name)
            assert gone.kind == "updated" and not gone.agent.ok
            assert "cannot fetch" in str(gone.agent.error)
            async with http_server(routes, port):  # and comes back on the same port
                back = await next_event(browser, name)
                assert back.kind == "updated" and back.agent.ok
    finally:
        await server.aclose()


async def test_a_browser_on_default_interfaces_sees_a_loopback_agent_come_and_go(
    token: str, tmp_path: Path, spawn: Callable[..., Awaitable[Any]]
) -> None:
    # What a newcomer does on one machine: `wot-agents discover --watch` first, then an agent
    # served on 127.0.0.1 (it announces on loopback only), then Ctrl-C or SIGTERM to the agent.
    # The browser must hear the arrival and the goodbye, not find the agent only by asking.
    (tmp_path / "lonely.py").write_text(
        f"from wot_agents import Agent\nagent = Agent('Lonely {token}', id='urn:test:lonely-{token}')\n"
    )
    name = f"Lonely {token}._wot._tcp.local."
    async with Browser() as browser:  # interfaces=None: the default of `wot-agents discover`
        agent = await spawn(
            ["env", f"PYTHONPATH={tmp_path}:{os.environ.get('PYTHONPATH', '')}",
             *wot_agents("serve", "lonely:agent", "--http", "0", "--announce")]
        )  # fmt: skip
        await agent.expect(lambda line: "TD at" in line.get("text", ""), within=60)
        added = await next_event(browser, name, within=30)
        assert added.kind == "added" and added.agent.description is not None
        agent.proc.send_signal(signal.SIGTERM)
        removed = await next_event(browser, name, within=5)  # the goodbye, not a ttl running out
        assert removed.kind == "removed"
        assert await agent.proc.wait() == 0
