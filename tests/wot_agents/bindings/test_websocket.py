"""LMOS WebSocket binding specifics: the subprotocol, the envelope, correlation, cancellation."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp

from wot_agents import consume
from wot_agents.bindings import RunningAgent


def _ws_href(running: RunningAgent) -> str:
    return running.base_urls["ws"] + f"/{running.slug}/ws"


async def _exchange(ws: aiohttp.ClientWebSocketResponse, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send_str(json.dumps(message))
    reply: dict[str, Any] = json.loads((await ws.receive(timeout=5)).data)
    return reply


async def test_the_lmos_subprotocol_is_required(running: RunningAgent) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(
            _ws_href(running),
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "x3JJHMbDL1EzLkh9GBhXDw==",
            },
        ) as response:
            assert response.status == 400
        async with session.ws_connect(_ws_href(running), protocols=("lmosprotocol",)) as ws:
            assert ws.protocol == "lmosprotocol"


async def test_envelope_and_correlation(running: RunningAgent) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(_ws_href(running), protocols=("lmosprotocol",)) as ws,
    ):
        request = {
            "thingId": running.context.thing_id,  # the spec's examples spell it both ways
            "messageId": str(uuid.uuid4()),
            "messageType": "invokeAction",
            "action": "add",
            "input": {"a": 1, "b": 2},
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        }
        reply = await _exchange(ws, request)
        assert reply["messageType"] == "actionStatus"
        assert reply["correlationID"] == request["messageId"]
        assert reply["thingID"] == "urn:test:weather"
        assert reply["status"] == "completed" and reply["output"] == 3
        assert reply["traceparent"] == request["traceparent"]
        uuid.UUID(reply["messageID"], version=4)

        reply = await _exchange(
            ws,
            {
                "messageType": "readProperty",
                "name": "temperature",
                "messageID": "m1",
                "thingID": "x",
                "correlationID": "c1",
            },
        )
        assert (reply["messageType"], reply["correlationID"], reply["value"]) == (
            "propertyReading",
            "c1",
            20.0,
        )
        assert reply["timestamp"].endswith("Z")

        reply = await _exchange(ws, {"messageType": "fly", "messageID": "m2", "thingID": "x"})
        assert reply["messageType"] == "error" and reply["status"] == "400" and reply["correlationID"] == "m2"
        reply = await _exchange(
            ws,
            {
                "messageType": "writeProperty",
                "name": "station",
                "data": "Paris",
                "messageID": "m3",
                "thingID": "x",
            },
        )
        assert reply["messageType"] == "error" and reply["status"] == "405"
        await ws.send_str("not json")
        assert json.loads((await ws.receive(timeout=5)).data)["messageType"] == "error"


async def test_cancel_action(running: RunningAgent) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(_ws_href(running), protocols=("lmosprotocol",)) as ws,
    ):
        await ws.send_str(
            json.dumps(
                {
                    "messageType": "invokeAction",
                    "action": "wait",
                    "input": {"seconds": 10},
                    "messageID": "m1",
                    "correlationID": "job-1",
                    "thingID": "x",
                }
            )
        )
        await asyncio.sleep(0.05)
        await ws.send_str(
            json.dumps(
                {
                    "messageType": "cancelAction",
                    "action": "wait",
                    "messageID": "m2",
                    "correlationID": "job-1",
                    "thingID": "x",
                }
            )
        )
        reply = json.loads((await ws.receive(timeout=5)).data)
        assert (reply["messageType"], reply["status"], reply["correlationID"]) == (
            "actionStatus",
            "cancelled",
            "job-1",
        )


async def test_one_connection_carries_concurrent_requests(running: RunningAgent) -> None:
    async with consume(running.description, prefer=["ws"]) as thing:
        slow = asyncio.create_task(thing.invoke_action("wait", {"seconds": 0.5}))
        fast = await asyncio.gather(*(thing.invoke_action("add", {"a": i}) for i in range(20)))
        assert fast == [i + 1 for i in range(20)]
        assert not slow.done()  # the slow one did not hold the others up
        assert await slow == "done"
        client = thing._pool.client_for("ws")
        assert len(client._connections) == 1  # type: ignore[attr-defined]
