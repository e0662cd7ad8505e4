"""Hostile peers (issue 17): what an attack run on the bindings found, each against real servers.

A hostile agent is a real aiohttp server that answers as an attacker would; a "foreign" server
stands for a third party the attacker would like the caller's credentials to reach.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from wot_agents import RemoteError, consume
from wot_agents.bindings import ApiKey, BearerToken

Routes = Callable[[web.Application, str], None]


@asynccontextmanager
async def http_server(
    routes: Callable[[web.Application], None],
) -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A real HTTP server on a free loopback port: its base URL, and every request it received."""
    seen: list[web.Request] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(request)
        return await handler(request)  # type: ignore[no-any-return]

    app = web.Application(middlewares=[record])
    routes(app)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def _td(base: str) -> dict[str, Any]:
    return {
        "@context": "https://www.w3.org/2022/wot/td/v1.1",
        "title": "Hostile",
        "id": "urn:test:hostile",
        "securityDefinitions": {"bearer": {"scheme": "bearer"}},
        "security": "bearer",
        "properties": {
            "away": {"type": "string", "forms": [{"href": f"{base}/away", "op": ["readproperty"]}]},
            "moved": {"type": "integer", "forms": [{"href": f"{base}/moved", "op": ["readproperty"]}]},
            "stream": {
                "type": "string",
                "observable": True,
                "forms": [{"href": f"{base}/stream", "op": ["observeproperty"], "subprotocol": "sse"}],
            },
        },
        "actions": {"job": {"forms": [{"href": f"{base}/job"}]}},
    }


async def test_credentials_never_leave_the_forms_origin() -> None:
    """A ``Location`` or a redirect to another origin is refused, and never gets the token."""

    def foreign_routes(app: web.Application) -> None:
        async def anything(request: web.Request) -> web.Response:
            return web.json_response({"status": "completed", "output": "stolen"})

        app.router.add_route("*", "/{tail:.*}", anything)

    async with http_server(foreign_routes) as (foreign, foreign_seen):

        def hostile_routes(app: web.Application) -> None:
            async def job(request: web.Request) -> web.Response:
                return web.json_response(
                    {"status": "pending"}, status=201, headers={"Location": f"{foreign}/s"}
                )

            async def away(request: web.Request) -> web.Response:
                raise web.HTTPFound(f"{foreign}/value")

            async def stream(request: web.Request) -> web.Response:
                raise web.HTTPTemporaryRedirect(f"{foreign}/stream")

            async def moved(request: web.Request) -> web.Response:
                raise web.HTTPTemporaryRedirect("/here")  # same origin: followed, with the token

            async def here(request: web.Request) -> web.Response:
                return web.json_response(5 if request.headers.get("Authorization") == "Bearer s3cret" else 0)

            app.router.add_post("/job", job)
            app.router.add_get("/away", away)
            app.router.add_get("/stream", stream)
            app.router.add_get("/moved", moved)
            app.router.add_get("/here", here)

        async with http_server(hostile_routes) as (hostile, _):
            async with consume(_td(hostile), credentials=BearerToken("s3cret"), timeout=5) as thing:
                with pytest.raises(RemoteError, match="not on the form's origin") as caught:
                    await thing.invoke_action("job")
                assert caught.value.status == 201 and caught.value.detail["location"] == f"{foreign}/s"
                with pytest.raises(RemoteError, match="not on the form's origin") as caught:
                    await thing.read_property("away")
                assert caught.value.status == 302
                with pytest.raises(RemoteError, match="not on the form's origin"):
                    await thing.observe_property("stream")
                assert await thing.read_property("moved") == 5
    assert foreign_seen == []


async def test_websocket_handshakes_are_not_redirected() -> None:
    """A redirected handshake would carry the form's API key to wherever the redirect points."""
    async with http_server(lambda app: None) as (foreign, foreign_seen):

        def hostile_routes(app: web.Application) -> None:
            async def ws(request: web.Request) -> web.Response:
                raise web.HTTPTemporaryRedirect(f"{foreign}/ws")

            app.router.add_get("/ws", ws)

        async with http_server(hostile_routes) as (hostile, _):
            td = {
                "@context": "https://www.w3.org/2022/wot/td/v1.1",
                "title": "Hostile",
                "securityDefinitions": {"key": {"scheme": "apikey", "in": "header", "name": "X-Key"}},
                "security": "key",
                "actions": {
                    "job": {
                        "forms": [
                            {"href": hostile.replace("http", "ws") + "/ws", "subprotocol": "lmosprotocol"}
                        ]
                    }
                },
            }
            async with consume(td, credentials=ApiKey("s3cret"), timeout=5) as thing:
                with pytest.raises(RemoteError, match="redirected") as caught:
                    await thing.invoke_action("job")
            assert caught.value.status == 307
    assert foreign_seen == []
