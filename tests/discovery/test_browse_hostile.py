"""The browser against hostile announcers (issue 17), over real multicast on the loopback interface."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from aiohttp import web
from zeroconf import ServiceInfo

from discovery import Announcer, Browser
from discovery._net import open_zeroconf

from .test_loopback import LOOPBACK, http_server, seen, serving, thing, token  # noqa: F401 - fixture


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _until(browser: Browser, condition: Callable[[], bool], within: float = 15) -> None:
    """Wait, event by event, until ``condition`` holds for the browser's view."""
    async with asyncio.timeout(within):
        if condition():
            return
        async for _ in browser:
            if condition():
                return


async def test_a_flood_cannot_hide_known_agents_or_keep_new_ones_out(token: str) -> None:  # noqa: F811
    """A full view gives way by failure: bogus services go, known-good ones stay, newcomers get in,
    and every goodbye is heard."""
    known, later = thing(f"Known {token}"), thing(f"Later {token}")
    bogus_port = _closed_port()
    zc = open_zeroconf(LOOPBACK)
    flood = [
        ServiceInfo(
            "_wot._tcp.local.",
            f"Bogus{index} {token}._wot._tcp.local.",
            port=bogus_port,
            properties={"td": "/td"},
            server=f"bogus-{token}.local.",
            parsed_addresses=LOOPBACK,
        )
        for index in range(12)
    ]
    try:
        async with (
            http_server({"/known": serving(known), "/later": serving(later)}) as port,
            Browser(interfaces=LOOPBACK, max_agents=5, fetch_timeout=5) as browser,
            Announcer(known, port=port, td_path="/known", interfaces=LOOPBACK) as first,
        ):
            assert (await seen(browser, str(first.name), within=5)).ok
            for info in flood:
                await zc.async_register_service(info, cooperating_responders=True)
            async with Announcer(later, port=port, td_path="/later", interfaces=LOOPBACK) as second:
                name = str(second.name)
                await _until(browser, lambda: name in browser.agents and browser.agents[name].ok)
                assert browser.agents[str(first.name)].ok
                assert len([n for n in browser.agents if token in n]) <= 5
                await zc.async_unregister_all_services()
                await _until(browser, lambda: not [n for n in browser.agents if n.startswith("Bogus")])
            assert str(first.name) in browser.agents
    finally:
        await zc.async_close()


async def test_hostile_json_is_an_entry_with_an_error(token: str) -> None:  # noqa: F811
    """Huge numbers and deep nesting are bad input: the service stays in the view, with the reason."""

    def raw(body: bytes) -> object:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(body=body, content_type="application/td+json")

        return handler

    cases = {
        "/huge": (raw(b'{"title": ' + b"9" * 5000 + b"}"), "longer than"),
        "/deep": (raw(b"[" * 5000 + b"]" * 5000), "nests deeper"),
    }
    routes = {path: handler for path, (handler, _) in cases.items()}
    async with http_server(routes) as port, Browser(interfaces=LOOPBACK, fetch_timeout=1.0) as browser:  # type: ignore[arg-type]
        announcers = [
            Announcer(thing(f"{path[1:]} {token}"), port=port, td_path=path, interfaces=LOOPBACK)
            for path in routes
        ]
        try:
            await asyncio.gather(*(announcer.start() for announcer in announcers))
            for (path, (_, reason)), announcer in zip(cases.items(), announcers, strict=True):
                entry = await seen(browser, str(announcer.name), within=8)
                assert not entry.ok and reason in str(entry.error), (path, entry.error)
        finally:
            await asyncio.gather(*(announcer.aclose() for announcer in announcers))
