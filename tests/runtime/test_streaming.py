"""Streamed answers: SSE on the chat endpoint and the WebSocket endpoint, fed by the agents' chatStream."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.agents import Deployment, body, chat_agent, post, sse


@pytest.fixture
async def streaming(deployment: Deployment, mosquitto: str) -> Deployment:
    await deployment.add(chat_agent("weather"), http=True)
    await deployment.add(chat_agent("billing"), ws=True)
    await deployment.add(chat_agent("travel"), mqtt=mosquitto)
    await deployment.start(router="explicit")
    return deployment


@pytest.mark.parametrize("agent", ["WeatherAgent", "BillingAgent", "TravelAgent"])
async def test_sse_streams_the_parts_then_the_reply(
    streaming: Deployment, http: aiohttp.ClientSession, agent: str
) -> None:
    status, events = await sse(http, streaming.url, body("will it rain on Sunday", explicit=agent))
    assert status == 200
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "reply" and set(kinds[:-1]) == {"delta"} and len(kinds) > 2
    deltas = [data["delta"] for kind, data in events if kind == "delta"]
    assert all(data["turnId"] == "t1" for kind, data in events if kind == "delta")
    assert "".join(deltas) == f"{agent}: will it rain on Sunday"
    reply = events[-1][1]
    _, plain = await post(http, streaming.url, body("will it rain on Sunday", explicit=agent))
    assert reply == plain  # the final event is the JSON answer


async def test_sse_failures_before_the_first_part_are_json_errors(
    deployment: Deployment, http: aiohttp.ClientSession
) -> None:
    def broken(request: Any, stream: Any) -> str:
        raise RuntimeError("down")

    await deployment.add(chat_agent("weather", answer=broken), http=True)
    url = await deployment.start(router="explicit")
    status, (error,) = await sse(http, url, body("rain", explicit="Nobody"))
    assert (status, error["errorCode"]) == (404, "AGENT_NOT_FOUND")
    status, (error,) = await sse(http, url, body("rain", explicit="WeatherAgent"))
    assert (status, error["errorCode"]) == (502, "AGENT_CLIENT_EXCEPTION")


async def test_the_websocket_carries_turns_and_their_parts(
    streaming: Deployment, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(f"{streaming.url}/lmos/runtime/apis/v1/acme/chat/c7/ws") as ws:
        await ws.send_str(json.dumps({"turnId": "a", **body("sunny today?", explicit="WeatherAgent")}))
        await ws.send_str(json.dumps({"turnId": "b", **body("my invoice", explicit="TravelAgent")}))
        await ws.send_str("{broken")
        await ws.send_str(json.dumps({"turnId": "c", **body("x", explicit="Nobody")}))
        frames: dict[str | None, list[dict[str, Any]]] = {}
        while sum(1 for turn in frames.values() for f in turn if f["type"] in ("reply", "error")) < 4:
            frame = json.loads(await ws.receive_str(timeout=20))
            frames.setdefault(frame["turnId"], []).append(frame)
    for turn, agent, text in (("a", "WeatherAgent", "sunny today?"), ("b", "TravelAgent", "my invoice")):
        assert frames[turn][-1]["type"] == "reply"
        assert frames[turn][-1]["reply"]["content"] == f"{agent}: {text}"
        assert "".join(f["delta"] for f in frames[turn] if f["type"] == "delta") == f"{agent}: {text}"
    assert frames[None] == [frames[None][0]] and frames[None][0]["errorCode"] == "INVALID_REQUEST"
    assert frames["c"][-1]["type"] == "error" and frames["c"][-1]["errorCode"] == "AGENT_NOT_FOUND"
