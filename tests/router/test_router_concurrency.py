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
