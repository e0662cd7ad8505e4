"""The chat convention, over every binding: the LMOS message list in, the reply out, parts streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from wot_agents import (
    CHAT_ACTION,
    Agent,
    ChatMessage,
    ChatReply,
    ChatRequest,
    ChatStream,
    PayloadError,
    chat_handler,
    consume,
    is_chat_agent,
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
