"""W3C Trace Context from the client to the agent: HTTP headers, the LMOS WebSocket envelope, MQTT 5
user properties, as they go over the wire (the HTTP and WebSocket agents here are bare aiohttp
handlers; the MQTT agent is an SDK agent, its requests read off the real broker by a second
subscriber). That an SDK agent's handler sees the trace: test_lmos_context.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiomqtt
import pytest
from aiohttp import web

from tests.agents import Deployment, body, chat_agent, post
from wot_agents import serve_app

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACESTATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
REPLY = {"messages": [{"role": "assistant", "content": "noted"}]}


def stub_td(agent_id: str, title: str, href: str, **form: Any) -> dict[str, Any]:
    return {
        "@context": ["https://www.w3.org/2022/wot/td/v1.1", {"lmos": "https://eclipse.dev/lmos/protocol/v1"}],
        "@type": "lmos:Agent",
        "id": agent_id,
        "title": title,
        "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
        "security": "nosec_sc",
        "actions": {
            "chat": {
                "input": {"type": "object"},
                "output": {"type": "object"},
                "forms": [{"href": href, "op": "invokeaction", **form}],
            }
        },
    }


@pytest.fixture
async def stub_agents() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTP and a WebSocket chat endpoint that record the trace members they receive."""
    seen: list[dict[str, Any]] = []

    async def chat(request: web.Request) -> web.Response:
        seen.append({"binding": "http", **{k: request.headers.get(k) for k in ("traceparent", "tracestate")}})
        return web.json_response(REPLY)

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=["lmosprotocol"])
        await ws.prepare(request)
        async for message in ws:
            data = json.loads(message.data)
            seen.append({"binding": "ws", **{k: data.get(k) for k in ("traceparent", "tracestate")}})
            await ws.send_json(
                {
                    "thingID": data["thingID"],
                    "messageID": "4f6c2b8e-8f43-4b36-9df4-6e0f4c1f6d11",
                    "messageType": "actionStatus",
                    "correlationID": data["correlationID"],
                    "action": "chat",
                    "status": "completed",
                    "output": REPLY,
                }
            )
        return ws

    app = web.Application()
    app.router.add_post("/chat", chat)
    app.router.add_get("/ws", socket)
    async with serve_app(app) as url:
        yield url, seen


async def test_the_trace_reaches_the_agent_over_every_binding(
    deployment: Deployment, stub_agents: tuple[str, list[dict[str, Any]]], mosquitto: str
) -> None:
    url, seen = stub_agents
    ws_url = url.replace("http://", "ws://")
    from wot_agents import DirectoryClient

    async with DirectoryClient(deployment.directory) as directory:
        await directory.register(stub_td("urn:test:stub:http", "HttpStub", f"{url}/chat"))
        await directory.register(
            stub_td("urn:test:stub:ws", "WsStub", f"{ws_url}/ws", subprotocol="lmosprotocol")
        )
    running = await deployment.add(chat_agent("travel"), mqtt=mosquitto)
    deployment.agents["urn:test:stub:http"] = deployment.agents["urn:test:stub:ws"] = running  # counted
    broker = urlsplit(mosquitto)
    async with aiomqtt.Client(
        broker.hostname or "127.0.0.1", broker.port or 1883, protocol=aiomqtt.ProtocolVersion.V5
    ) as observer:
        await observer.subscribe("#")
        runtime_url = await deployment.start(router="explicit")
        async with aiohttp.ClientSession() as http:
            headers = {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
            for agent in ("HttpStub", "WsStub", "TravelAgent"):
                status, reply = await post(http, runtime_url, body("hi", explicit=agent), headers=headers)
                assert status == 200, reply
            async with http.post(
                f"{runtime_url}/apis/v1/acme/chat/c2/message",
                json=body("hi", explicit="HttpStub"),
                headers={"x-turn-id": "t", "traceparent": "00-not-a-trace-01"},  # invalid: a new trace
            ) as answer:
                assert answer.status == 200
                fresh = answer.headers["traceparent"]
        properties: dict[str, str] = {}
        async with asyncio.timeout(10):
            async for message in observer.messages:
                pairs = dict(getattr(message.properties, "UserProperty", None) or [])
                if "traceparent" in pairs:
                    properties = pairs
                    break
    http_seen, ws_seen = seen[0], seen[1]
    assert (http_seen["binding"], ws_seen["binding"]) == ("http", "ws")
    for carried in (http_seen, ws_seen, properties):
        version, trace_id, parent_id, flags = carried["traceparent"].split("-")
        assert (version, trace_id, flags) == ("00", "0af7651916cd43dd8448eb211c80319c", "01")
        assert parent_id != "b7ad6b7169203331"  # the runtime's own span, a child of the client's
        assert carried["tracestate"] == TRACESTATE
    assert seen[2]["traceparent"].split("-")[1] == fresh.split("-")[1] != "0af7651916cd43dd8448eb211c80319c"
