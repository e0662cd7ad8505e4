"""Forwarding a turn to the chosen agent over whatever binding its TD offers, through ``consume()``.

One set of binding clients (HTTP, WebSocket, MQTT) serves every agent: consuming thousands of
agents opens one connection pool per protocol, not one per agent. Each agent's consumed thing is
kept while its description stays the same.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Any, cast

from wot_agents import (
    AgentDescription,
    ChatMessage,
    ChatReply,
    ChatRequest,
    ClientPool,
    ConsumedThing,
    InteractionError,
    RemoteError,
    RequestTimeout,
    TrustError,
)
from wot_agents.bindings import Credentials
from wot_agents.trust import TlsConfig, TrustPolicy

from ._lmos import AGENT_CLIENT_EXCEPTION, LmosError
from ._metrics import Metrics

__all__ = ["Breaker", "Forwarder"]


class Breaker:
    """A circuit breaker per agent: ``threshold`` failures in a row take the agent out of routing
    for ``cooldown`` seconds; then it is tried again, and one more failure takes it out again at
    once, while a success closes the breaker."""

    def __init__(self, *, threshold: int = 3, cooldown: float = 30.0, clock: Any = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}

    def available(self, agent_id: str) -> bool:
        until = self._open_until.get(agent_id)
        return until is None or self._clock() >= until

    def failed(self, agent_id: str) -> None:
        count = self._failures[agent_id] = self._failures.get(agent_id, 0) + 1
        if count >= self.threshold:
            self._open_until[agent_id] = self._clock() + self.cooldown

    def succeeded(self, agent_id: str) -> None:
        self._failures.pop(agent_id, None)
        self._open_until.pop(agent_id, None)

    @property
    def open(self) -> list[str]:
        """The agents out of routing right now."""
        return [agent_id for agent_id in self._open_until if not self.available(agent_id)]


class Forwarder:
    """Talks to agents with the chat convention; failures become LMOS ``AGENT_CLIENT_EXCEPTION``.

    ``timeouts`` overrides ``timeout`` per agent id. Every outcome feeds the :class:`Breaker`.
    """

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        timeouts: Mapping[str, float] | None = None,
        breaker: Breaker | None = None,
        metrics: Metrics | None = None,
        trust: TrustPolicy | None = None,
        credentials: Credentials = None,
        tls: TlsConfig | None = None,
    ) -> None:
        self.metrics = metrics
        #: Checked once per agent description before its first turn (refused: AGENT_CLIENT_EXCEPTION).
        self.trust = trust
        self.credentials = credentials
        self.timeout = timeout
        self.timeouts = dict(timeouts or {})
        self.breaker = breaker or Breaker()
        self._clients = ClientPool(max_connections=256, tls=tls)
        self._things: dict[str, ConsumedThing] = {}

    def timeout_of(self, agent: AgentDescription) -> float:
        return self.timeouts.get(agent.id or agent.title, self.timeout)

    def thing(self, agent: AgentDescription) -> ConsumedThing:
        key = agent.id or agent.title
        thing = self._things.get(key)
        if thing is None or thing.description is not agent:
            thing = ConsumedThing(
                agent,
                timeout=self.timeout_of(agent),
                clients=self._clients,
                trust=self.trust,
                credentials=self.credentials,
            )
            self._things[key] = thing
        return thing

    def forget(self, agent_id: str) -> None:
        # The consumed thing holds no connection of its own (the clients are shared): drop it.
        self._things.pop(agent_id, None)

    async def chat(
        self, agent: AgentDescription, messages: ChatRequest | Sequence[ChatMessage], conversation_id: str
    ) -> ChatReply:
        key = agent.id or agent.title
        try:
            async with asyncio.timeout(self.timeout_of(agent)):
                reply = await self.thing(agent).chat(messages, conversation_id=conversation_id)
        except (TimeoutError, InteractionError, TrustError) as exc:
            raise self._failed(agent, exc) from exc
        self.breaker.succeeded(key)
        return reply

    async def chat_stream(
        self,
        agent: AgentDescription,
        messages: ChatRequest | Sequence[ChatMessage],
        conversation_id: str,
        on_reply: Callable[[ChatReply], object] | None = None,
    ) -> AsyncGenerator[str, None]:
        """The reply's parts as the agent streams them (``chatStream``); ``on_reply`` gets the
        whole reply once the agent answered."""
        parts = cast(
            AsyncGenerator[str, None],
            self.thing(agent).chat_stream(messages, conversation_id=conversation_id, on_reply=on_reply),
        )
        key = agent.id or agent.title
        try:
            while True:
                try:
                    async with asyncio.timeout(self.timeout_of(agent)):
                        part = await anext(parts)
                except StopAsyncIteration:
                    self.breaker.succeeded(key)
                    return
                except (TimeoutError, InteractionError, TrustError) as exc:
                    raise self._failed(agent, exc) from exc
                yield part
        finally:
            await parts.aclose()

    def _failed(self, agent: AgentDescription, exc: BaseException) -> LmosError:
        key = agent.id or agent.title
        self.breaker.failed(key)
        error = _failure(agent, exc)
        if self.metrics is not None:
            self.metrics.inc("runtime_agent_errors_total", agent=key, status=str(error.status))
        return error

    async def aclose(self) -> None:
        self._things.clear()
        await self._clients.aclose()


def _failure(agent: AgentDescription, exc: BaseException) -> LmosError:
    timed_out = isinstance(exc, TimeoutError | RequestTimeout)
    what = "did not answer in time" if timed_out else f"failed: {exc}"
    problem = exc.problem if isinstance(exc, RemoteError) else {}
    if isinstance(problem.get("detail"), str) and problem["detail"]:
        what = f"failed: {problem['detail']}"
    return LmosError(
        AGENT_CLIENT_EXCEPTION, f"agent {agent.title!r} ({agent.id}) {what}", status=504 if timed_out else 502
    )
