"""Forwarding a turn to the chosen agent over whatever binding its TD offers, through ``consume()``.

One set of binding clients (HTTP, WebSocket, MQTT) serves every agent: consuming thousands of
agents opens one connection pool per protocol, not one per agent. Each agent's consumed thing is
kept while its description stays the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, cast

from wot_agents import (
    AgentDescription,
    ChatMessage,
    ChatReply,
    ClientPool,
    ConsumedThing,
    InteractionError,
    RequestTimeout,
)

from ._lmos import AGENT_CLIENT_EXCEPTION, LmosError

__all__ = ["Forwarder"]


class Forwarder:
    """Talks to agents with the chat convention; failures become LMOS ``AGENT_CLIENT_EXCEPTION``."""

    def __init__(self, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._clients = ClientPool(max_connections=256)
        self._things: dict[str, ConsumedThing] = {}

    def thing(self, agent: AgentDescription) -> ConsumedThing:
        key = agent.id or agent.title
        thing = self._things.get(key)
        if thing is None or thing.description is not agent:
            thing = self._things[key] = ConsumedThing(agent, timeout=self.timeout, clients=self._clients)
        return thing

    def forget(self, agent_id: str) -> None:
        # The consumed thing holds no connection of its own (the clients are shared): drop it.
        self._things.pop(agent_id, None)

    async def chat(
        self, agent: AgentDescription, messages: Sequence[ChatMessage], conversation_id: str
    ) -> ChatReply:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.thing(agent).chat(messages, conversation_id=conversation_id)
        except (TimeoutError, InteractionError) as exc:
            raise _failure(agent, exc) from exc

    async def chat_stream(
        self, agent: AgentDescription, messages: Sequence[ChatMessage], conversation_id: str
    ) -> AsyncIterator[str]:
        """The reply's parts as the agent streams them (``chatStream``)."""
        parts = cast(
            AsyncGenerator[str, None],
            self.thing(agent).chat_stream(messages, conversation_id=conversation_id),
        )
        try:
            while True:
                try:
                    async with asyncio.timeout(self.timeout):
                        part = await anext(parts)
                except StopAsyncIteration:
                    return
                except (TimeoutError, InteractionError) as exc:
                    raise _failure(agent, exc) from exc
                yield part
        finally:
            await parts.aclose()

    async def aclose(self) -> None:
        self._things.clear()
        await self._clients.aclose()


def _failure(agent: AgentDescription, exc: BaseException) -> LmosError:
    timed_out = isinstance(exc, TimeoutError | RequestTimeout)
    what = "did not answer in time" if timed_out else f"failed: {exc}"
    detail: Any = getattr(exc, "detail", None)
    if detail and isinstance(detail, dict) and detail.get("detail"):
        what = f"failed: {detail['detail']}"
    return LmosError(
        AGENT_CLIENT_EXCEPTION, f"agent {agent.title!r} ({agent.id}) {what}", status=504 if timed_out else 502
    )
