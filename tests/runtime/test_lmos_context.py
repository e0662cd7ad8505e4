"""What an LMOS client sends beside the text reaches the SDK agent's handler over every binding, and
what the agent returns comes back: the messages' ``binaryData``, the ``anonymizationEntities``
(sent in the agent request's ``conversationContext``, returned in the reply as LMOS does), the
system and user context, and the client's W3C trace (the handler's ``request.trace`` has the
client's trace id)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.agents import Deployment, body, chat_agent, post, sse
from wot_agents import AnonymizationEntity, ChatMessage, ChatReply, ChatRequest, TraceContext, current_trace

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
NAME = {"type": "NAME", "value": "Alice", "replacement": "<NAME_1>"}
FOUND = {"type": "IBAN", "value": "DE02 1203", "replacement": "<IBAN_1>"}
ATTACHMENTS = [
    {"mimeType": "image/png", "dataAsBase64": "iVBORw0KGgo="},
    {"mimeType": "application/pdf", "source": "https://example.org/invoice.pdf"},
]
AGENTS = {"WeatherAgent": "weather", "BillingAgent": "billing", "TravelAgent": "travel"}


def lmos_body(agent: str) -> dict[str, Any]:
    payload = body("what does this show, <NAME_1>?", explicit=agent)
    payload["inputContext"]["messages"][0]["binaryData"] = ATTACHMENTS
    payload["inputContext"]["anonymizationEntities"] = [NAME]
    payload["systemContext"]["contextParams"] = [{"key": "country", "value": "de"}]
    payload["userContext"] = {
        "userId": "user456",
        "userToken": "token-of-user456",
        "contextParams": [{"key": "tier", "value": "gold"}],
    }
    return payload


@pytest.fixture
async def recording(deployment: Deployment, mosquitto: str) -> tuple[Deployment, list[Any]]:
    """An agent per binding that records what its handler saw and adds an entity it found."""
    seen: list[tuple[str, ChatRequest, TraceContext | None]] = []

    def answer(name: str) -> Any:
        async def reply(request: ChatRequest, stream: Any) -> ChatReply:
            seen.append((name, request, current_trace.get()))
            await stream.send("seen ")
            await stream.send("it")
            entities = [*request.anonymization_entities, AnonymizationEntity.model_validate(FOUND)]
            return ChatReply(
                messages=[ChatMessage(role="assistant", content="seen it")], anonymization_entities=entities
            )

        return reply

    await deployment.add(chat_agent("weather", answer=answer("weather")), http=True)
    await deployment.add(chat_agent("billing", answer=answer("billing")), ws=True)
    await deployment.add(chat_agent("travel", answer=answer("travel")), mqtt=mosquitto)
    await deployment.start(router="explicit")
    return deployment, seen


@pytest.mark.parametrize("agent", list(AGENTS))
async def test_attachments_entities_and_trace_reach_the_agent_and_entities_come_back(
    recording: tuple[Deployment, list[Any]], http: aiohttp.ClientSession, agent: str
) -> None:
    deployment, seen = recording
    status, reply = await post(http, deployment.url, lmos_body(agent), headers={"traceparent": TRACEPARENT})
    assert status == 200, reply
    assert reply["content"] == "seen it"
    assert reply["anonymizationEntities"] == [NAME, FOUND]  # the agent's, as LMOS returns them
    status, events = await sse(http, deployment.url, lmos_body(agent))
    assert status == 200 and events[-1][0] == "reply"
    assert events[-1][1]["anonymizationEntities"] == [NAME, FOUND]  # streamed: the same reply
    (name, request, trace), (_, streamed, _) = seen
    assert name == AGENTS[agent]
    for received in (request, streamed):
        sent = [
            item.model_dump(mode="json", exclude_none=True) for item in received.messages[0].binary_data or ()
        ]
        assert sent == ATTACHMENTS
        assert [e.model_dump(mode="json") for e in received.anonymization_entities] == [NAME]
        # systemContext and userContext as an LMOS runtime hands them on (Arc's AgentRequest).
        assert [(e.key, e.value) for e in received.system_context or ()] == [("country", "de")]
        user = received.user_context
        assert user is not None and (user.user_id, user.user_token) == ("user456", "token-of-user456")
        assert [(e.key, e.value) for e in user.profile] == [("tier", "gold")]
        assert received.conversation_id == ("conv-1" if received is request else "c1")
    assert trace is not None and request.trace is trace
    assert trace.trace_id == TRACEPARENT.split("-")[1]  # the client's trace, down to the handler


async def test_the_websocket_endpoint_carries_the_frames_trace_to_the_agent(
    recording: tuple[Deployment, list[Any]], http: aiohttp.ClientSession
) -> None:
    deployment, seen = recording
    async with http.ws_connect(f"{deployment.url}/apis/v1/acme/chat/c9/ws") as ws:
        for turn, agent in enumerate(AGENTS):
            await ws.send_str(
                json.dumps({"turnId": str(turn), "traceparent": TRACEPARENT, **lmos_body(agent)})
            )
        replies = []
        while len(replies) < len(AGENTS):
            frame = json.loads(await ws.receive_str(timeout=20))
            if frame["type"] == "reply":
                replies.append(frame["reply"])
            assert frame["type"] != "error", frame
    assert all(reply["anonymizationEntities"] == [NAME, FOUND] for reply in replies)
    assert sorted(name for name, _, _ in seen) == sorted(AGENTS.values())
    assert {trace.trace_id for _, _, trace in seen if trace is not None} == {TRACEPARENT.split("-")[1]}
    assert all(trace is not None for _, _, trace in seen)
