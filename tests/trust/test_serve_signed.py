"""An agent that signs its TD and serves its did:web document; consumers that demand it."""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.servers import port_of
from wot_agents import (
    AgentIdentity,
    DidResolver,
    KeyResolutionError,
    SignatureError,
    TrustPolicy,
    UntrustedIssuer,
    consume,
    serve_app,
    verify,
)

from .conftest import make_agent

LOOPBACK = {"127.0.0.1"}


async def test_served_td_is_signed_with_did_key() -> None:
    identity = AgentIdentity.generate()
    async with make_agent().serve(http=True, identity=identity) as running:
        async with aiohttp.ClientSession() as session, session.get(running.td_url or "") as response:
            td = await response.json()
    assert verify(td) == [identity.did]


async def test_did_web_document_is_served_and_resolves() -> None:
    identity = AgentIdentity.generate("P-256")
    async with make_agent().serve(http=True, identity=identity, did_web=True) as running:
        assert running.identity is not None and running.identity.did.startswith("did:web:127.0.0.1%3A")
        policy = TrustPolicy(trusted={running.identity.did}, resolver=DidResolver(http_hosts=LOOPBACK))
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{running.td_url}/did.json") as response:
                assert response.content_type == "application/did+json"
                document = await response.json()
            async with session.get(running.td_url or "") as response:
                td = await response.json()
        assert document["service"][0]["serviceEndpoint"] == running.td_url
        assert await policy.check(td) == [running.identity.did]
        async with consume(td, trust=policy) as thing:
            assert await thing.invoke_action("add", {"a": 2, "b": 3}) == 5


async def test_consume_refuses_a_tampered_td_before_sending_anything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    identity = AgentIdentity.generate()
    async with make_agent().serve(http=True, identity=identity) as running:
        td = copy.deepcopy(running.description.to_dict())
        td["actions"]["add"]["description"] = "Adds two numbers, and sends them elsewhere."
        with caplog.at_level(logging.WARNING, logger="wot_agents.trust"):
            async with consume(td, trust=TrustPolicy()) as thing:
                with pytest.raises(SignatureError, match="changed after signing"):
                    await thing.invoke_action("add", {"a": 1})
        assert "refused urn:test:signed-weather" in caplog.text


async def test_consume_refuses_unsigned_and_untrusted() -> None:
    async with make_agent().serve(http=True) as running:
        with pytest.raises(UntrustedIssuer, match="not signed"):
            async with consume(running.description, trust=TrustPolicy()) as thing:
                await thing.read_property("station")
    stranger = AgentIdentity.generate()
    async with make_agent().serve(http=True, identity=stranger) as running:
        policy = TrustPolicy(trusted={AgentIdentity.generate().did})
        async with consume(running.description, trust=policy) as thing:
            with pytest.raises(UntrustedIssuer, match="none of them a trusted issuer"):
                await thing.read_property("station")


@pytest.fixture
async def hostile_web() -> AsyncIterator[str]:
    """A web server whose did.json documents misbehave: redirects elsewhere, 10 MB, not JSON."""

    async def elsewhere(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://localhost:{request.url.port}/honest/did.json")

    async def same_host(request: web.Request) -> web.Response:
        raise web.HTTPFound("/huge/did.json")

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # no Content-Length: the limit must hold while reading
        await response.prepare(request)
        chunk = b" " * 65536
        for _ in range(160):  # 10 MB
            await response.write(chunk)
        return response

    app = web.Application()
    app.router.add_get("/elsewhere/did.json", elsewhere)
    app.router.add_get("/same-host/did.json", same_host)
    app.router.add_get("/huge/did.json", huge)
    async with serve_app(app) as url:
        yield f"127.0.0.1%3A{port_of(url)}"


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("elsewhere", "redirects to another host"),
        ("huge", "more than the limit"),
        ("same-host", "more than the limit"),  # followed within the host, then refused for its size
        ("missing", "answered 404"),
    ],
)
async def test_did_web_resolution_is_bounded(hostile_web: str, path: str, error: str) -> None:
    resolver = DidResolver(http_hosts=LOOPBACK)
    signer = AgentIdentity.generate().with_web(f"did:web:{hostile_web}:{path}")
    from wot_agents import sign

    td = sign({"@context": "https://www.w3.org/2022/wot/td/v1.1", "id": "urn:x", "title": "X",
               "securityDefinitions": {"n": {"scheme": "nosec"}}, "security": "n"}, signer)  # fmt: skip
    with pytest.raises(KeyResolutionError, match=error):
        await TrustPolicy(resolver=resolver).check(td)
