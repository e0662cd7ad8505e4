"""serve(): the TD endpoints, lifecycle (rollback on a failed start), security on every binding."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.agents import make_agent
from wot_agents import Agent, ConnectError, NoSuitableFormError, RemoteError, consume
from wot_agents.bindings import (
    ApiKey,
    ApiKeyAuth,
    BasicAuth,
    BasicCredentials,
    BearerAuth,
    BearerToken,
    RunningAgent,
    serve,
)

from .conftest import BINDINGS


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_td_is_served_at_the_well_known_path_and_its_own(running: RunningAgent) -> None:
    base = running.base_urls["http"]
    async with aiohttp.ClientSession() as session:
        for url in (base + "/.well-known/wot", running.td_url):
            async with session.get(url) as response:
                assert response.status == 200
                assert response.content_type == "application/td+json"
                assert (await response.json()) == running.description.to_dict()


async def test_consume_accepts_the_td_as_json_text_and_dict(running: RunningAgent, agent: Agent) -> None:
    for td in (running.description.to_json(), running.description.to_dict()):
        async with consume(td) as thing:
            assert await thing.invoke_action("add", {"a": 1, "b": 1}) == 2


async def test_a_failed_start_stops_what_already_started(agent: Agent) -> None:
    port = _closed_port()
    serving = serve(agent, http=port, mqtt=f"mqtt://127.0.0.1:{_closed_port()}")
    with pytest.raises(ConnectError):
        async with serving:
            pass
    with socket.socket() as sock:  # the HTTP server started first and must be gone
        assert sock.connect_ex(("127.0.0.1", port)) != 0


async def test_serve_needs_a_binding(agent: Agent) -> None:
    with pytest.raises(ValueError, match="at least one binding"):
        serve(agent)


async def test_listeners_hear_about_description_changes(agent: Agent) -> None:
    async with serve(agent, http=True) as running:
        seen = []
        stop = running.on_description_change(seen.append)
        agent.property("humidity", float, default=0.5)
        description = await running.refresh()
        assert "humidity" in (description.properties or {})
        assert seen == [description]
        stop()
        await running.refresh()
        assert len(seen) == 1


async def test_a_refused_connection_is_a_connect_error(agent: Agent) -> None:
    async with serve(agent, http=True, ws=True) as running:
        td = running.description
    for binding in ("http", "ws"):
        async with consume(td, prefer=[binding]) as thing:
            with pytest.raises(ConnectError) as caught:
                await thing.invoke_action("add", {"a": 1})
        assert isinstance(caught.value, ConnectionError)


SCHEMES = [
    (BearerAuth({"s3cret"}), BearerToken("s3cret"), BearerToken("wrong")),
    (BasicAuth({"ann": "pw"}), BasicCredentials("ann", "pw"), BasicCredentials("ann", "nope")),
    (ApiKeyAuth({"k1"}), ApiKey("k1"), ApiKey("k2")),
    (ApiKeyAuth({"k1"}, in_="query", param="key"), ApiKey("k1"), ApiKey("k2")),
]


@pytest.mark.parametrize("binding", BINDINGS)
@pytest.mark.parametrize(
    ("scheme", "good", "bad"), SCHEMES, ids=["bearer", "basic", "apikey-header", "apikey-query"]
)
async def test_security_is_applied_by_the_client_and_enforced_by_the_server(
    mosquitto: str, binding: str, scheme: object, good: object, bad: object
) -> None:
    agent = make_agent()
    async with serve(agent, http=True, ws=True, mqtt=mosquitto, security=scheme) as running:  # type: ignore[arg-type]
        td = running.description
        assert td.security == [scheme.name]  # type: ignore[attr-defined]
        assert "s3cret" not in td.to_json() and "pw" not in td.to_json()
        async with consume(td, prefer=[binding], credentials=good) as thing:  # type: ignore[arg-type]
            assert await thing.invoke_action("add", {"a": 1, "b": 2}) == 3
        async with consume(td, prefer=[binding], credentials=bad) as thing:  # type: ignore[arg-type]
            with pytest.raises(RemoteError) as caught:
                await thing.invoke_action("add", {"a": 1, "b": 2})
            assert caught.value.status == 401
        async with consume(td, prefer=[binding]) as thing:
            with pytest.raises(NoSuitableFormError, match="no credentials"):
                await thing.invoke_action("add", {"a": 1})
        if binding == "http":  # the TD itself stays public, for discovery
            async with aiohttp.ClientSession() as session, session.get(running.td_url) as response:
                assert response.status == 200


async def test_no_suitable_form_explains_why(running: RunningAgent) -> None:
    async with consume(running.description, prefer=["http"]) as thing:
        with pytest.raises(KeyError, match="no action 'nope'"):
            await thing.invoke_action("nope")
    doc = running.description.to_dict()
    for affordance in doc["actions"].values():
        affordance["forms"] = [{**form, "href": "coap://x/a"} for form in affordance["forms"]]
    async with consume(doc) as thing:
        with pytest.raises(NoSuitableFormError, match="no client for the 'coap' scheme"):
            await thing.invoke_action("add", {"a": 1})
    assert urlsplit(running.base_urls["http"]).hostname == "127.0.0.1"


async def test_awaiting_serve_serves_until_cancelled(agent: Agent) -> None:
    port = _closed_port()
    serving = asyncio.ensure_future(agent.serve(http=port))
    try:
        for _ in range(200):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            await asyncio.sleep(0.01)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/.well-known/wot") as response,
        ):
            assert (await response.json())["title"] == "Test Weather"
    finally:
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


async def test_forms_of_an_agent_on_every_interface_name_the_host(agent: Agent) -> None:
    async with agent.serve(http="0.0.0.0:0") as running:
        assert urlsplit(running.base_urls["http"]).hostname == socket.gethostname().lower()
        assert all(
            "0.0.0.0" not in form.href for _, _, a in running.description.affordances() for form in a.forms
        )
    async with agent.serve(http=True, public_url="https://weather.example.com") as running:
        assert running.description.actions["add"].forms[0].href.startswith("https://weather.example.com/")  # type: ignore[index]
