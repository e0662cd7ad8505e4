"""The vector router with the real MiniLM model: decisions, rules, abstention, filters."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from router import DESCRIBED_ONLY_FLOOR, FENCE, RULES, AgentFilter, VectorRouter, calibrate_threshold
from router._vector import low_quantile
from wot_agents import ChatMessage, RoutingError

from .conftest import make_agent

QUERIES = [
    ("is it going to snow in Oslo on Friday", "urn:test:weather"),
    ("please refund the shoes I sent back", "urn:test:billing"),
    ("I cannot find my last invoice", "urn:test:billing"),
    ("get me a flight to Madrid next week", "urn:test:travel"),
    ("play something by the Beatles", "urn:test:music"),
]


@pytest.mark.parametrize("rule", RULES)
async def test_each_rule_routes_clear_queries(minilm, agents, rule) -> None:
    async with VectorRouter(minilm, rule=rule, threshold=0.0) as router:
        await router.add(agents)
        for query, expected in QUERIES:
            decision = await router.route(query)
            assert decision.agent_id == expected, (rule, query, decision)
            assert decision.method == "vector"
            assert decision.ranking[0][0] == expected


async def test_decision_names_the_capability_and_explains(minilm, agents) -> None:
    async with VectorRouter(minilm, threshold=0.0) as router:
        await router.add(agents)
        decision = await router.route("I want my money back for the broken blender")
        assert decision.agent_id == "urn:test:billing"
        assert decision.capability_id == "urn:test:billing:refund"
        assert "refund" in decision.reason and "Billing agent" in decision.reason
        assert 0 < decision.score <= 1


async def test_threshold_abstains_on_out_of_scope_queries(minilm, agents) -> None:
    async with VectorRouter(minilm, rule="centroid", threshold=0.0) as router:
        await router.add(agents)
        out_of_scope = ["what is the capital of Peru", "how many legs does a spider have", "tell me a joke"]
        scores = [(await router.route(text)).score for text in out_of_scope]
        router.threshold = calibrate_threshold(scores, recall=1.0)
        for text in out_of_scope:
            decision = await router.route(text)
            assert decision.agent_id is None and "below the threshold" in decision.reason
        in_scope = [(await router.route(query)).agent_id for query, _ in QUERIES]
        assert in_scope == [expected for _, expected in QUERIES]


async def test_filters_restrict_by_tenant_channel_and_subset(minilm, make_agent) -> None:
    common = [("forecast", "weather forecast", ["will it rain tomorrow", "weather this weekend"])]
    async with VectorRouter(minilm, threshold=0.0) as router:
        await router.add(
            [
                make_agent("urn:a", "Weather A", "weather", common, **{"lmos:supportedTenants": ["acme"]}),
                make_agent("urn:b", "Weather B", "weather", common, **{"lmos:supportedChannels": ["voice"]}),
                make_agent("urn:c", "Weather C", "weather", common, **{"lmos:subset": "canary"}),
                make_agent(
                    "urn:d", "Music", "music", [("play", "play music", ["play a song", "next track"])]
                ),
            ]
        )
        query = "will it rain in Rome tomorrow"

        async def chosen(where: AgentFilter) -> set[str]:
            return {agent for agent, _ in (await router.route(query, where=where)).ranking}

        assert await chosen(AgentFilter(tenant="other")) == {"urn:b", "urn:c", "urn:d"}
        assert await chosen(AgentFilter(channel="web")) == {"urn:a", "urn:c", "urn:d"}
        assert await chosen(AgentFilter(subset="stable")) == {"urn:a", "urn:b", "urn:d"}
        decision = await router.route(
            query, where=AgentFilter(tenant="other", channel="web", subset="stable")
        )
        assert decision.agent_id == "urn:d"  # the only one left, however poor a match
        nothing = await router.route(query, candidates=[], where=AgentFilter())
        assert nothing.agent_id is None and "no candidate" in nothing.reason


async def test_candidates_restrict_and_are_indexed_on_the_fly(minilm, agents) -> None:
    async with VectorRouter(minilm, threshold=0.0) as router:
        await router.add(agents[:2])
        decision = await router.route("book a hotel in Lisbon", candidates=agents[1:3])
        assert decision.agent_id == "urn:test:travel"  # not added before: indexed from the candidates
        assert {agent for agent, _ in decision.ranking} <= {"urn:test:billing", "urn:test:travel"}


async def test_parsed_tds_are_taken_like_models(minilm, agents) -> None:
    # Every public call that takes a TD takes the model or the parsed document alike.
    async with VectorRouter(minilm, threshold=0.0) as router:
        assert await router.add([agent.to_dict() for agent in agents[:2]]) == 2
        decision = await router.route("book a hotel in Lisbon", candidates=[a.to_dict() for a in agents[1:3]])
        assert decision.agent_id == "urn:test:travel"


@pytest.mark.parametrize("rule", RULES)
async def test_a_mask_made_before_agents_were_added_still_routes(minilm, agents, rule) -> None:
    # The runtime's race: a query's candidate mask is made, then add() grows the index while the
    # query is embedded. The newer agents were not candidates; the query must still be decided.
    async with VectorRouter(minilm, rule=rule, threshold=0.0) as router:
        await router.add(agents[:2])
        await router.refitted()
        stale = router.index.allowed_mask([str(agent.id) for agent in agents[:2]], router.where)
        await router.add(agents[2:])
        vector = await asyncio.to_thread(router.embed_query, "refund my shoes")
        decision = await asyncio.to_thread(router.route_vector, vector, stale)
        assert decision.agent_id == "urn:test:billing"
        assert {agent for agent, _ in decision.ranking} <= {a.id for a in agents[:2]}


async def test_classifier_refits_after_agents_change(minilm, agents) -> None:
    async with VectorRouter(minilm, threshold=0.0) as router:
        await router.add(agents)
        assert (await router.route("play some jazz")).agent_id == "urn:test:music"
        assert await router.remove("urn:test:music")
        after = await router.route("play some jazz")
        assert after.agent_id != "urn:test:music"
        assert "urn:test:music" not in dict(after.ranking)


async def test_empty_query_is_an_error(minilm, agents) -> None:
    async with VectorRouter(minilm) as router:
        await router.add(agents)
        with pytest.raises(RoutingError):
            await router.route("   ")


async def test_wordllama_routes_too(wordllama, agents) -> None:
    async with VectorRouter(wordllama, rule="centroid", threshold=0.0) as router:
        await router.add(agents)
        assert (await router.route("refund my money please")).agent_id == "urn:test:billing"


def test_calibrated_threshold_refuses_the_requested_share() -> None:
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    threshold = calibrate_threshold(scores, recall=0.8)
    assert sum(score < threshold for score in scores) == 8
    with pytest.raises(ValueError):
        calibrate_threshold([])


async def test_calibrate_gate_sets_the_gate_it_is_asked_for(minilm, agents) -> None:
    out_of_scope = ["what is the capital of Peru", "how many legs does a spider have", "tell me a joke"]
    async with VectorRouter(minilm) as router:
        await router.add(agents)
        default_similarity = router.similarity
        threshold = await asyncio.to_thread(router.calibrate_gate, out_of_scope, 1.0)
        assert (router.threshold, router.similarity) == (threshold, default_similarity)
        similarity = await asyncio.to_thread(router.calibrate_gate, out_of_scope, 1.0, "similarity")
        assert (router.threshold, router.similarity) == (None, similarity)
        for text in out_of_scope:
            assert (await router.route(text)).agent_id is None
        with pytest.raises(ValueError, match="unknown gate"):
            router.calibrate_gate(out_of_scope, gate="margin")


def test_default_gates_come_from_the_agents_not_from_constants(minilm) -> None:
    default = VectorRouter(minilm)
    assert default.threshold is None and default.similarity is None and default.gate_quantile == 0.005
    own = VectorRouter(minilm, threshold=0.7)  # a gate of one's own: no held-out gates
    assert own.threshold == 0.7 and own.similarity is None and own.gate_quantile is None
    assert VectorRouter(minilm, similarity=0.3).gate_quantile is None


async def test_held_out_gates_follow_the_agents_served(minilm, agents) -> None:
    """A gate per agent with examples, below nearly all of its held-out examples' similarities;
    one for agents without examples, lower (a query resembles a description less than an example)."""
    async with VectorRouter(minilm) as router:
        await router.add(agents)
        per_agent, described_only = router.held_out_gates()
        assert sorted(per_agent) == sorted(router.index.get(a.id).slot for a in agents)
        assert described_only is not None and described_only < min(per_agent.values())
        by_slot, _ = router.index.held_out_similarities()
        below = sum(int((sims < per_agent[slot]).sum()) for slot, sims in by_slot.items())
        assert below <= max(1, 0.05 * sum(len(sims) for sims in by_slot.values()))
        router.gate_quantile = 0.5  # a stricter quantile: higher gates, recomputed on the next change
        await router.remove(agents[0].id)
        assert all(gate > per_agent[slot] for slot, gate in router.held_out_gates()[0].items())


def test_a_small_sample_quantile_refuses_the_share_asked_for() -> None:
    """100 held-out values cannot show their 0.5% quantile: numpy's interpolation between the two
    lowest refuses ~1.3% of new values from the same distribution; the extrapolated tail keeps to
    about the 0.5% asked for. From 199 values on, and under 50, the quantile is numpy's."""
    rng = np.random.default_rng(0)
    interpolated, extrapolated = [], []
    for _ in range(100):
        held_out, new = rng.normal(size=100), rng.normal(size=10_000)
        interpolated.append(float((new < np.quantile(held_out, 0.005)).mean()))
        extrapolated.append(float((new < low_quantile(held_out, 0.005)).mean()))
    assert np.mean(interpolated) > 0.012
    assert 0.003 < np.mean(extrapolated) < 0.008
    for size in (12, 49, 199):
        values = rng.normal(size=size)
        assert low_quantile(values, 0.005) == np.quantile(values, 0.005)


async def test_agents_without_examples_are_not_refused(minilm, agents) -> None:
    """Described only by names and descriptions, as most agents are registered: the default gates
    must not refuse their in-scope queries (CLINC150's constants refused 37% of such a set's)."""
    described = [
        make_agent(
            a.id, a.title, a.description or "", [(c.name, c.description or "", []) for c in a.capabilities]
        )
        for a in agents
    ]
    async with VectorRouter(minilm) as router:
        await router.add(described)
        assert router.held_out_gates() == ({}, DESCRIBED_ONLY_FLOOR["all-MiniLM-L6-v2"])
        decisions = [await router.route(query) for query, _ in QUERIES]
        assert all(decision.agent_id is not None for decision in decisions), decisions


async def test_default_gates_abstain_with_a_handful_of_agents(minilm, agents) -> None:
    """With four agents the classifier's best probability stays high whatever the query: the
    similarity gate is what refuses out-of-scope questions, without refusing in-scope ones."""
    async with VectorRouter(minilm) as router:
        await router.add(agents)
        for text in ("what is the capital of Peru", "how many legs does a spider have", "who wrote Hamlet"):
            decision = await router.route(text)
            assert decision.agent_id is None and "similar to the query" in decision.reason, decision
            assert decision.score > 0.25  # a probability threshold alone would have answered
        assert [(await router.route(query)).agent_id for query, _ in QUERIES] == [e for _, e in QUERIES]


async def test_a_short_follow_up_is_read_with_the_previous_user_turn(minilm, agents) -> None:
    history = [
        ChatMessage(role="user", content="I sent the shoes back last week"),
        ChatMessage(role="assistant", content="Thanks, we received them."),
    ]
    async with VectorRouter(minilm) as router:
        await router.add(agents)
        alone = await router.route("so when do I get it?")
        assert alone.agent_id != "urn:test:billing"
        follow_up = await router.route("so when do I get it?", history)
        assert follow_up.agent_id == "urn:test:billing", follow_up
        pairs = [(turn.role, turn.content) for turn in history]  # the form before ChatMessage
        assert (await router.route("so when do I get it?", pairs)).agent_id == "urn:test:billing"
        # a full new request is read alone, however strong the previous turn
        switch = await router.route("book me a flight to Rome for next Monday morning", history)
        assert switch.agent_id == "urn:test:travel"
        router.history_weight = 0.0  # history off: the follow-up is read alone again
        assert (await router.route("so when do I get it?", history)).agent_id == alone.agent_id


async def test_the_gate_fence_keeps_one_outlying_example_from_lowering_every_gate(minilm, agents) -> None:
    """One example unlike the rest of its agent sets the 0.5% quantile of a small set's held-out
    similarities; with the opt-in fence every gate stays above where that outlier would put it."""
    clock = make_agent(
        "urn:test:clock",
        "Clock agent",
        "Tells the time.",
        [
            (
                "time",
                "the current time",
                ["what time is it", "tell me the time", "zebra crossing paint colours"],
            )
        ],
    )
    async with VectorRouter(minilm) as plain, VectorRouter(minilm, gate_fence=FENCE) as fenced:
        await asyncio.gather(plain.add([*agents, clock]), fenced.add([*agents, clock]))
        low, high = plain.held_out_gates()[0], fenced.held_out_gates()[0]
        assert low.keys() == high.keys()
        assert all(high[slot] > low[slot] for slot in low), (low, high)
