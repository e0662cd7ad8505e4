"""The chat convention, over every binding: the LMOS message list in, the reply out, parts streamed."""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator

import pytest

from wot_agents import (
    CHAT_ACTION,
    Agent,
    AnonymizationEntity,
    BinaryData,
    ChatMessage,
    ChatReply,
    ChatRequest,
    ChatStream,
    ConversationContext,
    PayloadError,
    TraceContext,
    TraceLogFilter,
    chat_handler,
    consume,
    current_trace,
    is_chat_agent,
    use_trace,
)
from wot_agents.bindings import RunningAgent

from .conftest import BINDINGS


def chat_agent(*, streams: bool) -> Agent:
    agent = Agent("Echo", id="urn:test:echo")

    async def reply(request: ChatRequest, stream: ChatStream) -> str:
        """Repeats the last message, word by word."""
        words = request.messages[-1].content.split()
        if streams:
            for index, word in enumerate(words):
                await stream.send(word if index == 0 else " " + word)
        return "you said: " + " ".join(words)

    chat_handler(agent)(reply)
    return agent


@pytest.fixture
async def echo(mosquitto: str) -> AsyncIterator[RunningAgent]:
    async with chat_agent(streams=True).serve(http=True, ws=True, mqtt=mosquitto) as running:
        yield running


@pytest.mark.parametrize("binding", BINDINGS)
async def test_chat_round_trip(echo: RunningAgent, binding: str) -> None:
    td = echo.description
    assert is_chat_agent(td)
    assert td.actions[CHAT_ACTION].description == "Repeats the last message, word by word."  # type: ignore[index]
    async with consume(td, prefer=[binding]) as thing:
        reply = await thing.chat(
            [
                {"role": "user", "content": "hello"},
                ChatMessage(role="assistant", content="hi"),
                {"role": "user", "content": "rain tomorrow?"},
            ],
            conversation_id="c-1",
        )
        assert isinstance(reply, ChatReply)
        assert reply.text == "you said: rain tomorrow?"
        assert reply.conversation_id == "c-1" and reply.turn_id
        parts = [part async for part in thing.chat_stream([{"role": "user", "content": "will it rain"}])]
        assert parts == ["will", " it", " rain"]
        with pytest.raises(PayloadError):
            await thing.chat([])  # the LMOS message list may not be empty


async def test_an_agent_that_does_not_stream_gives_its_reply_as_one_part() -> None:
    async with chat_agent(streams=False).serve(http=True) as running, consume(running.description) as thing:
        assert [part async for part in thing.chat_stream([{"role": "user", "content": "a b"}])] == [
            "you said: a b"
        ]


@pytest.mark.parametrize("binding", BINDINGS)
async def test_the_handler_sees_attachments_entities_and_the_callers_trace(
    mosquitto: str, binding: str, caplog: pytest.LogCaptureFixture
) -> None:
    """What an LMOS runtime sends an agent reaches the handler over every binding: the messages'
    ``binaryData``, the ``conversationContext``'s anonymization entities, the W3C trace (as
    ``request.trace`` and ``current_trace``, the agent's own span of the caller's); the reply
    returns the entities (the handler's own, else the request's)."""
    seen: list[tuple[ChatRequest, TraceContext | None]] = []
    agent = Agent("Lmos", id="urn:test:lmos")

    async def reply(request: ChatRequest, stream: ChatStream) -> str | ChatReply:
        seen.append((request, current_trace.get()))
        logging.getLogger("test.agent").warning("handling")
        if request.messages[-1].content == "add one":
            found = AnonymizationEntity(type="PHONE", value="0711 123", replacement="<PHONE_1>")
            return ChatReply(
                messages=[ChatMessage(role="assistant", content="noted")],
                anonymization_entities=[*request.anonymization_entities, found],
            )
        await stream.send("seen")
        return "seen"

    chat_handler(agent)(reply)
    entity = AnonymizationEntity(type="NAME", value="Alice", replacement="<NAME_1>")
    picture = BinaryData(mime_type="image/png", data_as_base64="iVBORw0KGgo=")
    request = ChatRequest(
        messages=[
            ChatMessage(
                role="user",
                content="what is on it?",
                binary_data=[picture, BinaryData(mime_type="audio/wav", source="https://example.org/a.wav")],
            )
        ],
        conversation_id="c-7",
        conversation_context=ConversationContext(conversation_id="c-7", anonymization_entities=[entity]),
    )
    caller = TraceContext.new()
    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(TraceLogFilter())
    handler.setFormatter(logging.Formatter("%(trace_id)s %(message)s"))
    logging.getLogger("test.agent").addHandler(handler)
    try:
        async with agent.serve(**{binding: mosquitto if binding == "mqtt" else True}) as running:
            async with consume(running.description, prefer=[binding]) as thing:
                with use_trace(caller):
                    answer = await thing.chat(request)
                    whole: list[ChatReply] = []
                    parts = [p async for p in thing.chat_stream(request, on_reply=whole.append)]
                added = await thing.chat(
                    request.model_copy(update={"messages": [ChatMessage(role="user", content="add one")]})
                )
    finally:
        logging.getLogger("test.agent").removeHandler(handler)
    assert answer.text == "seen" and parts == ["seen"]
    assert answer.anonymization_entities == [entity] and whole[0].anonymization_entities == [entity]
    assert [e.replacement for e in added.anonymization_entities or ()] == ["<NAME_1>", "<PHONE_1>"]
    received, trace = seen[0]
    assert received.messages[0].binary_data == request.messages[0].binary_data
    assert received.anonymization_entities == [entity]
    assert received.trace is trace and trace is not None
    assert trace.trace_id == caller.trace_id and trace.parent_id != caller.parent_id  # the agent's span
    assert seen[2][1] is None  # outside the caller's trace: none
    logged = handler.stream.getvalue().splitlines()  # type: ignore[attr-defined]
    assert logged[0] == f"{caller.trace_id} handling" and logged[-1] == "- handling"
