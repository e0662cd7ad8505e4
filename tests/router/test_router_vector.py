"""The vector router with the real MiniLM model: decisions, rules, abstention, filters."""

from __future__ import annotations

import pytest

from router import RULES, AgentFilter, VectorRouter, calibrate_threshold
from wot_agents import ChatMessage, RoutingError

QUERIES = [
    ("is it going to snow in Oslo on Friday", "urn:test:weather"),
    ("please refund the shoes I sent back", "urn:test:billing"),
    ("I cannot find my last invoice", "urn:test:billing"),
    ("get me a flight to Madrid next week", "urn:test:travel"),
    ("play something by the Beatles", "urn:test:music"),
]


@pytest.mark.parametrize("rule", RULES)
async def test_each_rule_routes_clear_queries(minilm, agents, rule) -> None:
    router = VectorRouter(minilm, rule=rule, threshold=0.0)
    await router.add(agents)
    for query, expected in QUERIES:
        decision = await router.route(query)
        assert decision.agent_id == expected, (rule, query, decision)
        assert decision.method == "vector"
        assert decision.ranking[0][0] == expected


async def test_decision_names_the_capability_and_explains(minilm, agents) -> None:
    router = VectorRouter(minilm, threshold=0.0)
    await router.add(agents)
    decision = await router.route("I want my money back for the broken blender")
    assert decision.agent_id == "urn:test:billing"
    assert decision.capability_id == "urn:test:billing:refund"
    assert "refund" in decision.reason and "Billing agent" in decision.reason
    assert 0 < decision.score <= 1


async def test_threshold_abstains_on_out_of_scope_queries(minilm, agents) -> None:
    router = VectorRouter(minilm, rule="centroid", threshold=0.0)
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
    router = VectorRouter(minilm, threshold=0.0)
    await router.add(
        [
            make_agent("urn:a", "Weather A", "weather", common, **{"lmos:supportedTenants": ["acme"]}),
            make_agent("urn:b", "Weather B", "weather", common, **{"lmos:supportedChannels": ["voice"]}),
            make_agent("urn:c", "Weather C", "weather", common, **{"lmos:subset": "canary"}),
            make_agent("urn:d", "Music", "music", [("play", "play music", ["play a song", "next track"])]),
        ]
    )
    query = "will it rain in Rome tomorrow"

    async def chosen(where: AgentFilter) -> set[str]:
        return {agent for agent, _ in (await router.route(query, where=where)).ranking}

    assert await chosen(AgentFilter(tenant="other")) == {"urn:b", "urn:c", "urn:d"}
    assert await chosen(AgentFilter(channel="web")) == {"urn:a", "urn:c", "urn:d"}
    assert await chosen(AgentFilter(subset="stable")) == {"urn:a", "urn:b", "urn:d"}
    decision = await router.route(query, where=AgentFilter(tenant="other", channel="web", subset="stable"))
    assert decision.agent_id == "urn:d"  # the only one left, however poor a match
    nothing = await router.route(query, candidates=[], where=AgentFilter())
    assert nothing.agent_id is None and "no candidate" in nothing.reason


async def test_candidates_restrict_and_are_indexed_on_the_fly(minilm, agents) -> None:
    router = VectorRouter(minilm, threshold=0.0)
    await router.add(agents[:2])
    decision = await router.route("book a hotel in Lisbon", candidates=agents[1:3])
    assert decision.agent_id == "urn:test:travel"  # not added before: indexed from the candidates
    assert {agent for agent, _ in decision.ranking} <= {"urn:test:billing", "urn:test:travel"}


async def test_classifier_refits_after_agents_change(minilm, agents) -> None:
    router = VectorRouter(minilm, threshold=0.0)
    await router.add(agents)
    assert (await router.route("play some jazz")).agent_id == "urn:test:music"
    assert await router.remove("urn:test:music")
    after = await router.route("play some jazz")
    assert after.agent_id != "urn:test:music"
    assert "urn:test:music" not in dict(after.ranking)


async def test_empty_query_is_an_error(minilm, agents) -> None:
    router = VectorRouter(minilm)
    await router.add(agents)
    with pytest.raises(RoutingError):
        await router.route("   ")


async def test_wordllama_routes_too(wordllama, agents) -> None:
    router = VectorRouter(wordllama, rule="centroid", threshold=0.0)
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
        threshold = router.calibrate_gate(out_of_scope, recall=1.0)
        assert (router.threshold, router.similarity) == (threshold, default_similarity)
        similarity = router.calibrate_gate(out_of_scope, recall=1.0, gate="similarity")
        assert (router.threshold, router.similarity) == (None, similarity)
        for text in out_of_scope:
            assert (await router.route(text)).agent_id is None
        with pytest.raises(ValueError, match="unknown gate"):
            router.calibrate_gate(out_of_scope, gate="margin")


def test_default_threshold_is_the_calibrated_one(minilm) -> None:
    from router import DEFAULT_SIMILARITY, DEFAULT_THRESHOLDS

    default = VectorRouter(minilm)
    assert default.threshold == DEFAULT_THRESHOLDS["all-MiniLM-L6-v2", "classifier"]
    assert default.similarity == DEFAULT_SIMILARITY["all-MiniLM-L6-v2", "classifier"]
    never = VectorRouter(minilm, rule="nearest")  # never calibrated: never abstains
    assert never.threshold is None and never.similarity is None
    own = VectorRouter(minilm, threshold=0.7)  # a threshold of one's own: no default similarity gate
    assert own.threshold == 0.7 and own.similarity is None


async def test_default_gates_abstain_with_a_handful_of_agents(minilm, agents) -> None:
    """With four agents the classifier's best probability stays high whatever the query: the
    similarity gate is what refuses out-of-scope questions, without refusing in-scope ones."""
    async with VectorRouter(minilm) as router:
        await router.add(agents)
        for text in ("what is the capital of Peru", "how many legs does a spider have", "who wrote Hamlet"):
            decision = await router.route(text)
            assert decision.agent_id is None and "similar to the query" in decision.reason, decision
            assert decision.score > router.threshold  # the probability alone would have answered
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
