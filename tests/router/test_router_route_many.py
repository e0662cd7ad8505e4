"""``VectorRouter.route_many``: several turns routed with one embedding call, each as if alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from router import MiniLMEmbedder, VectorRouter
from wot_agents import AgentDescription, ChatMessage, RoutingError


class Counting:
    """The real MiniLM, counting its calls."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner = inner
        self.calls: list[int] = []
        self.name, self.dim = inner.name, inner.dim

    def embed(self, texts: Any) -> Any:
        self.calls.append(len(texts))
        return self.inner.embed(texts)


async def test_route_many_decides_each_turn_as_route_sync_does_in_one_embedding_call(
    minilm: MiniLMEmbedder, agents: list[AgentDescription]
) -> None:
    embedder = Counting(minilm)
    async with VectorRouter(embedder) as router:
        await router.add(agents)
        await router.refitted()
        follow_up = [ChatMessage(role="user", content="will it rain in Paris tomorrow?")]
        weather_only = [agent for agent in agents if agent.id == "urn:test:weather"]
        turns: list[tuple[str, Any, Any]] = [
            ("I want my money back for the last order", (), None),
            ("and the day after?", follow_up, agents),  # a follow-up: mixed with the last user turn
            ("I want my money back for the last order", (), weather_only),  # its own candidates
            ("", (), None),
        ]
        embedder.calls.clear()
        decisions = await asyncio.to_thread(router.route_many, turns)  # blocking, as route_sync
        assert embedder.calls == [4]  # three queries and one follow-up's context, in one call
        with pytest.raises(RoutingError):
            router.route_sync("", None)
        assert isinstance(decisions[3], RoutingError)
        for (query, history, candidates), decision in zip(turns[:3], decisions[:3], strict=True):
            alone = await asyncio.to_thread(router.route_sync, query, candidates, None, history)
            assert not isinstance(decision, Exception)
            assert (decision.agent_id, decision.method) == (alone.agent_id, alone.method)
            assert decision.score == pytest.approx(alone.score, abs=1e-3)
        first, second, third = decisions[:3]
        assert not isinstance(first, Exception) and not isinstance(second, Exception)
        assert not isinstance(third, Exception)
        assert second.agent_id == "urn:test:weather" and first.agent_id != "urn:test:weather"
        assert third.agent_id in (None, "urn:test:weather")  # never an agent outside its candidates
