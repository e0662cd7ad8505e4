"""``consume(url)``: what a newcomer tries first, node-wot's requestThingDescription + consume.

The TD is fetched from a real server with the limits of the mDNS browser (no redirects, one
deadline, a byte limit, validation) and every failure is one of the SDK's errors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from aiohttp import web

from tests.agents import make_agent
from wot_agents import (
    DescriptionError,
    RemoteError,
    RequestTimeout,
    ValidationError,
    consume,
    request_description,
    serve_app,
)


async def test_consume_takes_the_url_the_td_is_served_at() -> None:
    async with make_agent().serve(http=True) as running:
        assert running.td_url is not None
        for url in (running.td_url, f"{running.base_urls['http']}/.well-known/wot"):
            async with consume(url) as thing:
                assert thing.description.id == "urn:test:weather"
                assert await thing.invoke_action("add", {"a": 2, "b": 3}) == 5
        # Without `async with`, the first interaction fetches the TD.
        thing = consume(running.td_url)
        with pytest.raises(RuntimeError, match=r"not fetched yet: use `async with consume\(url\)"):
            thing.description  # noqa: B018
        try:
            assert await thing.invoke_action("add", {"a": 1}) == 2
            assert thing.description.title == "Test Weather"
        finally:
            await thing.aclose()


async def test_text_that_is_neither_json_nor_a_url_says_what_consume_takes() -> None:
    with pytest.raises(DescriptionError, match=r"or the http\(s\):// URL where one is served"):
        consume("127.0.0.1:8080/.well-known/wot")
    with pytest.raises(DescriptionError, match="not valid JSON") as caught:
        consume('{"title": ')
    assert "URL" not in str(caught.value)  # broken JSON is just broken JSON


def _app(routes: dict[str, Callable[[], web.Response] | None]) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        respond = routes[request.path]
        if respond is None:
            await asyncio.sleep(3600)  # a server that never answers
        assert respond is not None
        return respond()

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    return app


async def test_bad_td_urls_fail_with_the_sdks_errors() -> None:
    huge = {"@context": "https://www.w3.org/2022/wot/td/v1.1", "title": "x" * (2 * 1024 * 1024)}
    routes: dict[str, Callable[[], web.Response] | None] = {
        "/missing": lambda: web.Response(status=404),
        "/moved": lambda: web.Response(status=302, headers={"Location": "http://127.0.0.2:1/td"}),
        "/huge": lambda: web.json_response(huge),
        "/invalid": lambda: web.json_response({"title": "no context"}),
        "/stalled": None,
    }
    async with serve_app(_app(routes)) as base:
        with pytest.raises(RemoteError, match="answered 404"):
            await request_description(f"{base}/missing")
        with pytest.raises(
            RemoteError,
            match=r"answered 302, a redirect to 'http://127\.0\.0\.2:1/td'; redirects are not followed",
        ):
            await request_description(f"{base}/moved")
        with pytest.raises(DescriptionError, match=r"exceeds|larger than the limit"):
            await request_description(f"{base}/huge")
        with pytest.raises(ValidationError, match="@context"):
            await request_description(f"{base}/invalid")
        with pytest.raises(RequestTimeout, match=r"no complete TD within 0\.5 s"):
            await request_description(f"{base}/stalled", time_limit=0.5)
        with pytest.raises(RemoteError, match="answered 404"):
            async with consume(f"{base}/missing"):
                pass
    with pytest.raises(DescriptionError, match="only http:// and https:// URLs"):
        await request_description("file:///etc/passwd")
    assert json.dumps(huge)  # the huge TD is valid JSON: only its size is refused
