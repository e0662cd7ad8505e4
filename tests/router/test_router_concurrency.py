"""Routing in several threads while agents are removed and re-added (the runtime's lanes meanwhile
learn catalog changes): no route may fail, and an agent gone for a route's whole duration is never
its decision."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from router import RULES, EmbeddingCache, VectorRouter
from wot_agents import AgentDescription

QUERIES = [
    "is it going to snow in Oslo on Friday",
    "please refund the shoes I sent back",
    "get me a flight to Madrid next week",
    "play something by the Beatles",
]

#: Remove/re-add cycles per test: before the index served routes from a view, routes in three
#: threads failed about once in a thousand (``a row points at a freed slot``); the churn runs
#: this many cycles whatever the machine's speed, so the outcome does not depend on timing.
CYCLES = 800


@pytest.mark.parametrize("rule", RULES)
async def test_routes_while_agents_are_removed_and_readded(
    minilm, agents: list[AgentDescription], tmp_path: Path, rule: str
) -> None:
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite")  # a re-add costs a lookup, not a model run
    try:
        async with VectorRouter(minilm, rule=rule, cache=cache) as router:
            await router.add(agents)
            await router.refitted()
            vectors = [await asyncio.to_thread(router.embed_query, query) for query in QUERIES]
            ids = [str(agent.id) for agent in agents]
            #: Per agent, bumped once its removal completed (odd: gone) and again before its re-add.
            phase = dict.fromkeys(ids, 0)
            done = threading.Event()
            errors: list[BaseException] = []
            wrong: list[str] = []
            routes = Counter[str]()

            def churn() -> None:
                try:
                    for cycle in range(CYCLES):
                        agent = agents[cycle % len(agents)]
                        assert router.index.remove(str(agent.id))
                        phase[str(agent.id)] += 1
                        phase[str(agent.id)] += 1
                        router.index.upsert([agent])
                except BaseException as exc:
                    errors.append(exc)
                finally:
                    done.set()

            def route(lane: int) -> None:
                try:
                    turn = 0
                    while not done.is_set():
                        turn += 1
                        vector = vectors[turn % len(vectors)]
                        before = dict(phase)
                        if lane == 2:  # candidates given as a mask, made while the agents change
                            allowed = router.index.allowed_mask(ids, router.where)
                            decision = router.route_vector(vector, allowed)
                        elif lane == 1:
                            decision = router.route_many([(QUERIES[turn % len(QUERIES)], (), None)])[0]
                            assert not isinstance(decision, BaseException), decision
                        else:
                            decision = router.route_vector(vector)
                        after = dict(phase)
                        chosen = decision.agent_id
                        routes[str(chosen)] += 1
                        if chosen is not None and before[chosen] == after[chosen] and before[chosen] % 2:
                            wrong.append(f"{chosen} was gone for the whole route: {decision}")
                except BaseException as exc:
                    errors.append(exc)
                    done.set()

            def race() -> None:
                lanes = [threading.Thread(target=route, args=(lane,)) for lane in range(3)]
                churner = threading.Thread(target=churn)
                for thread in [*lanes, churner]:
                    thread.start()
                for thread in [*lanes, churner]:
                    thread.join()

            await asyncio.to_thread(race)  # the event loop stays free (the suite's guard checks)
            assert not errors, errors
            assert not wrong, wrong[:3]
            assert sum(routes.values()) > 0
            # after the churn every agent is back, and routes as before
            assert sorted(agent.id for agent in router.index.agents) == sorted(ids)
            decision = await asyncio.to_thread(router.route_vector, vectors[1])
            assert decision.agent_id == "urn:test:billing", decision
            assert np.isfinite(decision.score)
    finally:
        cache.close()


async def test_stale_candidates_never_bring_back_a_removed_or_replaced_agent(
    minilm, agents: list[AgentDescription], make_agent
) -> None:
    # A runtime turn holds the candidates (the catalog's descriptions) it took before it was
    # routed; meanwhile the runtime may teach the router that one left or changed. The router
    # indexes candidates it has not seen, so a stale copy must not be indexed again.
    async with VectorRouter(minilm) as router:
        await router.add(agents)
        await router.refitted()
        stale = tuple(agents)
        billing = next(agent for agent in agents if agent.id == "urn:test:billing")
        updated = make_agent(
            "urn:test:weather",
            "Weather agent",
            "Snow, storms and avalanche warnings.",
            [("alerts", "weather alerts", ["is there an avalanche warning", "will a storm hit"])],
        )
        await router.remove("urn:test:billing")
        await router.add([updated])
        refund = "I want my money back for the last order"
        batched = await asyncio.to_thread(router.route_many, [(refund, (), stale)])
        alone = await asyncio.to_thread(router.route_sync, refund, stale)
        for decision in (*batched, alone):
            assert not isinstance(decision, Exception) and decision.agent_id != "urn:test:billing"
        assert "urn:test:billing" not in router.index
        weather = router.index.get("urn:test:weather")
        assert weather is not None and weather.description_model is updated
        # Candidates never seen are still indexed, and adding the removed agent brings it back.
        newcomer = make_agent("urn:test:music", "Music agent", "Plays songs.", [("play", "play music", [])])
        await asyncio.to_thread(router.route_sync, refund, [*stale, newcomer])
        assert "urn:test:music" in router.index
        await router.add([billing])
        assert "urn:test:billing" in router.index


async def test_a_candidate_removed_while_the_route_indexes_it_stays_removed(
    minilm, agents: list[AgentDescription], make_agent
) -> None:
    # The route starts indexing a candidate new to the router; before its embedding is done, the
    # runtime adds that agent and removes it again. The route's indexing must not outlive that.
    class Held:
        def __init__(self) -> None:
            self.name, self.dim = minilm.name, minilm.dim
            self.held = threading.Event()
            self.release = threading.Event()
            self.hold = True

        def embed(self, texts: list[str]) -> np.ndarray:
            if self.hold and "Music agent. Plays songs." in texts:
                self.hold = False
                self.held.set()
                self.release.wait(10)
            return minilm.embed(texts)

    embedder = Held()
    newcomer = make_agent("urn:test:music", "Music agent", "Plays songs.", [("play", "play music", [])])
    async with VectorRouter(embedder) as router:
        await router.add(agents)
        route = asyncio.create_task(asyncio.to_thread(router.route_sync, "play a song", [*agents, newcomer]))
        assert await asyncio.to_thread(embedder.held.wait, 10)
        await router.add([newcomer])
        await router.remove("urn:test:music")
        embedder.release.set()
        decision = await route
        assert decision.agent_id != "urn:test:music"
        assert "urn:test:music" not in router.index
