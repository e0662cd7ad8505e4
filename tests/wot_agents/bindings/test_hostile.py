"""Hostile peers (issue 17): what an attack run on the bindings found, each against real servers.

A hostile agent is a real aiohttp server that answers as an attacker would; a "foreign" server
stands for a third party the attacker would like the caller's credentials to reach.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiomqtt
import pytest
from aiohttp import web

from wot_agents import Agent, AgentDescription, PayloadError, RemoteError, consume, serve_app
from wot_agents.bindings import ApiKey, ApiKeyAuth, BearerAuth, BearerToken, RunningAgent, Serving, WebServer
from wot_agents.bindings.mqtt import Broker, LocalBroker
from wot_agents.bindings.mqtt._proof import ProofChecker, prove
from wot_agents.bindings.mqtt._topics import MAX_PAYLOAD, REPLY_TOPIC_PREFIX, publish_properties

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
    async with serve_app(app, shutdown_timeout=0.1) as url:
        yield url, seen


def _open_td(properties: dict[str, Any]) -> dict[str, Any]:
    """A hostile agent's TD (nosec) with these properties."""
    return {
        "@context": "https://www.w3.org/2022/wot/td/v1.1",
        "title": "Hostile",
        "securityDefinitions": {"nosec": {"scheme": "nosec"}},
        "security": "nosec",
        "properties": properties,
    }


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
                assert caught.value.status == 201 and caught.value.problem["location"] == f"{foreign}/s"
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


# --- MQTT: a broker everyone can publish to ------------------------------------------------------


@asynccontextmanager
async def mqtt_client(url: str, identifier: str | None = None) -> AsyncIterator[aiomqtt.Client]:
    broker = Broker.parse(url)
    async with aiomqtt.Client(
        broker.host, broker.port, identifier=identifier, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        yield client


async def _request(
    client: aiomqtt.Client, topic: str, payload: bytes, reply_to: str, *, correlation: bytes = b"1"
) -> None:
    properties = publish_properties(ResponseTopic=reply_to, CorrelationData=correlation)
    await client.publish(topic, payload, qos=1, properties=properties)


async def _until(client: aiomqtt.Client, done: Callable[[aiomqtt.Message], bool]) -> list[aiomqtt.Message]:
    """Every message received up to and including the first one ``done`` accepts."""
    seen: list[aiomqtt.Message] = []
    async with asyncio.timeout(10):
        async for message in client.messages:
            seen.append(message)
            if done(message):
                return seen
    raise AssertionError("unreachable")


async def test_mqtt_replies_only_to_the_reply_namespace(running: RunningAgent, mosquitto: str) -> None:
    """A request naming an affordance topic (the agent's own, or another agent's) as response topic
    is not answered there, so an attacker cannot make the agent publish its chosen text as an event."""
    reply = REPLY_TOPIC_PREFIX + "attacker"
    async with mqtt_client(mosquitto) as attacker:
        for topic in ("test-weather/events/alert", "other-agent/properties/x", reply):
            await attacker.subscribe(topic, qos=1)
        action = "test-weather/actions/add"
        await _request(attacker, action, b'{"a": 1}', "test-weather/events/alert", correlation=b"evil")
        await _request(attacker, action, b'{"a": 1}', "other-agent/properties/x", correlation=b"evil")
        await _request(attacker, action, b'{"a": 41}', reply, correlation=b"good")
        seen = await _until(attacker, lambda m: m.properties.CorrelationData == b"good")  # type: ignore[union-attr]
    assert [str(message.topic) for message in seen] == [reply]
    assert json.loads(seen[0].payload) == 42  # type: ignore[arg-type]


async def test_mqtt_restores_what_the_agent_retains(running: RunningAgent, mosquitto: str) -> None:
    """A stranger's retained publish on the TD topic or a property topic is put right at once."""
    td_topic = "wot/td/test-weather"
    async with mqtt_client(mosquitto) as watcher, mqtt_client(mosquitto) as stranger:
        for topic, owned in (
            (td_topic, running.description.to_dict()),
            ("test-weather/properties/temperature", 20.0),
        ):
            await watcher.subscribe(topic, qos=1)
            await _until(watcher, lambda m: True)  # the retained value now
            await stranger.publish(topic, b'{"forged": true}', qos=1, retain=True)
            seen = await _until(watcher, lambda m, owned=owned: json.loads(m.payload) == owned)  # type: ignore[misc,arg-type]
            assert json.loads(seen[0].payload) == {"forged": True}  # type: ignore[arg-type]
            await watcher.unsubscribe(topic)
    async with mqtt_client(mosquitto) as late:  # a newcomer finds the agent's own TD
        await late.subscribe(td_topic, qos=1)
        (message,) = await _until(late, lambda m: True)
        assert json.loads(message.payload) == running.description.to_dict()  # type: ignore[arg-type]


async def test_mqtt_payloads_are_limited_like_http(running: RunningAgent, mosquitto: str) -> None:
    reply = REPLY_TOPIC_PREFIX + "big"
    async with mqtt_client(mosquitto) as client:
        await client.subscribe(reply, qos=1)
        big = json.dumps({"a": 1, "b": 2, "pad": "x" * MAX_PAYLOAD}).encode()
        await _request(client, "test-weather/actions/add", big, reply)
        (message,) = await _until(client, lambda m: True)
    assert dict(message.properties.UserProperty)["status"] == "413"  # type: ignore[union-attr]
    assert json.loads(message.payload)["status"] == 413  # type: ignore[arg-type]


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("binding", ["http", "ws", "mqtt"])
async def test_inputs_are_validated_strictly(td: AgentDescription, binding: str) -> None:
    """The TD says ``"type": "integer"``: JSON ``true`` and ``"3"`` are not integers, on any binding."""
    async with consume(td, prefer=[binding], validate=False) as thing:
        for wrong in (True, "3"):
            with pytest.raises(RemoteError) as caught:
                await thing.invoke_action("add", {"a": wrong})
            assert caught.value.status == 400 and caught.value.problem["problems"][0]["pointer"] == "/a"
        assert await thing.invoke_action("add", {"a": 2.0, "b": 1}) == 3  # 2.0 is an integer (JSON Schema)


DEEP = b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}"
HUGE = b'{"a": ' + b"9" * 5000 + b"}"


async def test_http_refuses_hostile_json_and_undeclared_content_types(running: RunningAgent) -> None:
    href = running.base_urls["http"] + "/" + running.slug + "/actions/add"
    json_type = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session:
        for body, words in ((DEEP, "nests deeper"), (HUGE, "longer than")):
            async with session.post(href, data=body, headers=json_type) as response:
                assert response.status == 400 and response.content_type == "application/problem+json"
                assert words in (await response.json())["detail"]
        async with session.post(href, data=b'{"a": 1}', headers={"Content-Type": "text/plain"}) as response:
            assert response.status == 415
        async with session.post(href, data=b'{"a": 1}', headers=json_type) as response:
            assert await response.json() == 2


async def test_websocket_answers_bad_frames_with_an_error(running: RunningAgent) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            running.base_urls["ws"] + f"/{running.slug}/ws", protocols=["lmosprotocol"]
        ) as ws:
            for frame in (DEEP, HUGE):
                await ws.send_str(frame.decode())
                reply = await ws.receive_json(timeout=5)
                assert reply["messageType"] == "error" and reply["status"] == "400", reply
            await ws.send_bytes(b"\xff\xfe not text")
            reply = await ws.receive_json(timeout=5)
            assert reply["messageType"] == "error" and "UTF-8" in reply["detail"]


async def test_mqtt_answers_bad_payloads_with_an_error(running: RunningAgent, mosquitto: str) -> None:
    reply = REPLY_TOPIC_PREFIX + "bad"
    async with mqtt_client(mosquitto) as client:
        await client.subscribe(reply, qos=1)
        for index, body in enumerate((DEEP, HUGE)):
            await _request(client, "test-weather/actions/add", body, reply, correlation=bytes([index]))
            (message,) = await _until(client, lambda m: True)
            assert json.loads(message.payload)["status"] == 400  # type: ignore[arg-type]
        properties = publish_properties(ResponseTopic=reply, CorrelationData=b"t", ContentType="text/plain")
        await client.publish("test-weather/actions/add", b'{"a": 1}', qos=1, properties=properties)
        (message,) = await _until(client, lambda m: True)
        assert json.loads(message.payload)["status"] == 415  # type: ignore[arg-type]


async def test_the_consumer_turns_hostile_replies_into_documented_errors() -> None:
    """Deep JSON from an agent is a PayloadError, not a RecursionError."""

    def routes(app: web.Application) -> None:
        async def deep(request: web.Request) -> web.Response:
            return web.Response(body=b"[" * 100_000 + b"]" * 100_000, content_type="application/json")

        app.router.add_get("/deep", deep)

    async with http_server(routes) as (base, _):
        td = _open_td({"deep": {"forms": [{"href": f"{base}/deep"}]}})
        async with consume(td, timeout=5) as thing:
            with pytest.raises(PayloadError, match="nests deeper"):
                await thing.read_property("deep")


async def test_the_consumer_reads_replies_and_events_up_to_a_limit() -> None:
    """An endless body or an endless SSE line is cut at ``max_reply``, as a RemoteError."""

    async def endless(request: web.Request, prefix: bytes, content_type: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        await response.write(prefix)
        for _ in range(1024):  # 64 MiB, unless the client hangs up first
            await response.write(b"x" * 65536)
        return response

    def routes(app: web.Application) -> None:
        async def body(request: web.Request) -> web.StreamResponse:
            return await endless(request, b'"', "application/json")

        async def sse(request: web.Request) -> web.StreamResponse:
            return await endless(request, b": open\n\ndata: ", "text/event-stream")

        app.router.add_get("/body", body)
        app.router.add_get("/sse", sse)

    async with http_server(routes) as (base, _):
        td = _open_td(
            {
                "big": {
                    "observable": True,
                    "forms": [
                        {"href": f"{base}/body", "op": ["readproperty"]},
                        {"href": f"{base}/sse", "op": ["observeproperty"], "subprotocol": "sse"},
                    ],
                }
            }
        )
        async with consume(td, timeout=30, max_reply=1024 * 1024) as thing:
            with pytest.raises(RemoteError, match="larger than the limit"):
                await thing.read_property("big")
            async with await thing.observe_property("big") as values:
                with pytest.raises(RemoteError, match="over 1048576"):
                    await anext(values)


# --- limits --------------------------------------------------------------------------------------


async def test_websocket_streams_per_connection_and_connections_are_capped(running: RunningAgent) -> None:
    href = running.base_urls["ws"] + f"/{running.slug}/ws"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async with session.ws_connect(href, protocols=["lmosprotocol"]) as ws:
            for index in range(101):
                request = {"messageType": "subscribeEvent", "event": "alert", "correlationID": f"s{index}"}
                await ws.send_str(json.dumps(request))
            reply = await ws.receive_json(timeout=5)
            assert reply["messageType"] == "error" and reply["status"] == "429", reply
            assert reply["correlationID"] == "s100"
        sockets = [await session.ws_connect(href, protocols=["lmosprotocol"]) for _ in range(256)]
        try:
            with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
                await session.ws_connect(href, protocols=["lmosprotocol"])
            assert caught.value.status == 503
        finally:
            for socket in sockets:
                await socket.close()
        async with session.ws_connect(href, protocols=["lmosprotocol"]):  # room again
            pass


def _web_agent(agent: Agent, **limits: Any) -> Serving:
    """The agent over HTTP only, on a web server with the given limits."""
    from wot_agents.bindings.http import HttpBinding

    return Serving(agent, [WebServer([HttpBinding()], **limits)], (), (), "test-weather")


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection."""
    async with asyncio.timeout(10):
        return await reader.read()


async def test_streams_free_their_slot_as_soon_as_the_client_goes(agent: Agent) -> None:
    """Opened-and-dropped SSE streams must not hold request slots until the next heartbeat."""
    async with _web_agent(agent, max_connections=3) as running:
        href = running.base_urls["http"] + "/test-weather/events/alert"
        async with aiohttp.ClientSession() as session:
            for _ in range(10):  # each one is gone before the next: never more than one at a time
                response = await session.get(href, headers={"Accept": "text/event-stream"})
                assert response.status == 200
                await response.content.readline()  # the stream is open
                response.close()
                async with session.get(running.base_urls["http"] + "/test-weather/properties/station") as ok:
                    assert ok.status == 200, await ok.text()


async def test_half_sent_requests_are_closed_and_counted(agent: Agent) -> None:
    async with _web_agent(agent, read_timeout=0.5) as running:
        port = urlsplit(running.base_urls["http"]).port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /test-weather/actions/add HTTP/1.1\r\nHost: x\r\n")  # headers never end
        assert await _closed_by_server(reader) == b""
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /test-weather/actions/add HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"a": '  # the body never ends
        )
        async with asyncio.timeout(10):
            assert (await reader.readline()).startswith(b"HTTP/1.1 408")
        writer.close()
    async with _web_agent(agent, max_connections=2) as running:
        port = urlsplit(running.base_urls["http"]).port
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await _closed_by_server(reader) == b""  # one too many: closed at once
        writer.close()
        for _, held_writer in held:
            held_writer.close()


async def test_mqtt_requests_carry_a_proof_not_the_token(agent: Agent, mosquitto: str) -> None:
    """Any subscriber to the agent's topics sees a request's user properties: they must hold no
    reusable secret, and what they hold must not work again (replay) or elsewhere."""
    async with (
        agent.serve(mqtt=mosquitto, security=BearerAuth({"s3cret"})) as running,
        mqtt_client(mosquitto) as sniffer,
    ):
        await sniffer.subscribe("test-weather/actions/#", qos=1)
        async with consume(running.description, credentials=BearerToken("s3cret")) as thing:
            assert await thing.invoke_action("add", {"a": 1}) == 2
        (captured,) = await _until(sniffer, lambda m: True)
        properties = dict(captured.properties.UserProperty)  # type: ignore[union-attr]
        assert "s3cret" not in json.dumps(properties) and properties["Authorization"].startswith("WoT-Proof ")
        reply = REPLY_TOPIC_PREFIX + "replay"
        await sniffer.subscribe(reply, qos=1)
        replayed = publish_properties(
            ResponseTopic=reply, CorrelationData=b"r", UserProperty=list(properties.items())
        )
        await sniffer.publish("test-weather/actions/add", captured.payload, qos=1, properties=replayed)
        answer = await _until(sniffer, lambda m: str(m.topic) == reply)
        assert dict(answer[-1].properties.UserProperty)["status"] == "401"  # type: ignore[union-attr]


async def test_the_readme_broker_acls_keep_replies_private(agent: Agent, tmp_path: Any) -> None:
    """The README's ACL rule for replies works with the reply namespace: each caller reads its
    own replies, nobody else's (``%c``: the client id ends the reply topic)."""
    acl = (
        "topic readwrite test-weather/#\ntopic readwrite wot/td/#\ntopic write wot-agents/replies/#\n"
        "pattern read wot-agents/replies/%c\n"
    )
    async with LocalBroker(acl=acl, log=tmp_path / "mosquitto.log") as broker:
        async with agent.serve(mqtt=broker.url) as running, consume(running.description) as thing:
            assert await thing.invoke_action("add", {"a": 1}) == 2
            async with mqtt_client(broker.url, identifier="snooper") as snooper:
                await snooper.subscribe("wot-agents/replies/#", qos=1)  # granted, but read-filtered
                assert await thing.invoke_action("add", {"a": 2}) == 3  # someone else's reply
                own = REPLY_TOPIC_PREFIX + "snooper"
                await _request(snooper, "test-weather/actions/add", b'{"a": 40}', own)
                seen = await _until(snooper, lambda m: str(m.topic) == own)
                assert [json.loads(m.payload) for m in seen] == [41]  # type: ignore[arg-type]


async def test_a_broken_http_answer_is_a_remote_error() -> None:
    """A reply whose header line never ends is the agent's fault, not 'cannot reach'."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\nContent-Length: 2\r\n\r\n42")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        td = _open_td({"p": {"forms": [{"href": f"http://127.0.0.1:{port}/p"}]}})
        async with consume(td, timeout=5) as thing:
            with pytest.raises(RemoteError, match="broken HTTP answer"):
                await thing.read_property("p")
    finally:
        server.close()
        await server.wait_closed()


def test_a_proof_is_bound_to_its_request() -> None:
    checker = ProofChecker([BearerAuth({"t"}), ApiKeyAuth({"k"})])
    proof = prove("Bearer t", "a/actions/x", b"{}")
    assert checker.resolve({"Authorization": proof}, "a/actions/y", b"{}") == {"Authorization": proof}
    assert checker.resolve({"Authorization": proof}, "a/actions/x", b"[]") == {"Authorization": proof}
    stale = prove("Bearer t", "a/actions/x", b"{}", now=time.time() - 600)
    assert checker.resolve({"Authorization": stale}, "a/actions/x", b"{}") == {"Authorization": stale}
    assert checker.resolve({"Authorization": proof}, "a/actions/x", b"{}") == {"Authorization": "Bearer t"}
    assert checker.resolve({"Authorization": proof}, "a/actions/x", b"{}") == {"Authorization": proof}  # once
    key = prove("k", "a/actions/x", b"")
    assert checker.resolve({"X-API-Key": key}, "a/actions/x", b"") == {"X-API-Key": "k"}
