"""The LLM and hybrid routers: end to end against a real llama.cpp server, and their faults.

SmolLM2-135M is a weak router, so the real-model tests assert what must hold whatever it
answers: a decision names a candidate or no agent, never anything else, and says which path
decided. The fault tests script a fake endpoint to get replies a real model won't give on cue.
"""

from __future__ import annotations

import time

import openai  # noqa: F401 - imported at collection, off the event loop: the first import takes ~0.3 s
import pytest

from router import HybridRouter, LLMClient, LLMRouter, VectorRouter
from wot_agents import ChatMessage, LLMRoutingError


def real_llm(base_url: str) -> LLMClient:
    return LLMClient(model="smollm2", base_url=base_url, response_format="json_object+schema", timeout=60)


async def test_llm_router_end_to_end_with_a_real_model(llama_server, agents) -> None:
    router = LLMRouter(real_llm(llama_server))
    await router.add(agents)
    ids = {agent.id for agent in agents}
    try:
        for query in ("will it rain in Paris tomorrow?", "please refund my order", "play some jazz"):
            decision = await router.route(
                query,
                history=[
                    ChatMessage(role="user", content="hello"),
                    ChatMessage(role="assistant", content="How can I help?"),
                ],
            )
            assert decision.method == "llm"
            assert decision.agent_id is None or decision.agent_id in ids
            assert decision.reason
        only = await router.route("book me a flight to Rome", candidates=agents[2:3])
        assert only.agent_id in (None, "urn:test:travel")
    finally:
        await router.aclose()


async def test_hybrid_modes_end_to_end_with_a_real_model(llama_server, minilm, agents) -> None:
    vector = VectorRouter(minilm, threshold=0.0)
    hybrid = HybridRouter(vector, real_llm(llama_server), confident=2.0)  # always uncertain: the LLM decides
    await hybrid.add(agents)
    try:
        decision = await hybrid.route("I would like my money back")
        assert decision.method in ("hybrid:llm", "hybrid:vector")  # hybrid:vector only if the LLM failed
        assert decision.agent_id is None or decision.agent_id in {a.id for a in agents}
        hybrid.mode = "requirements"
        decision = await hybrid.route("I would like my money back")
        assert decision.method == "hybrid:requirements"
        assert decision.reason.startswith("requirements [")
    finally:
        await hybrid.aclose()


def fake_llm(fake, **options) -> LLMClient:
    return LLMClient(model="fake", base_url=fake.base_url, api_key="test", **options)


async def test_malformed_reply_is_retried_with_what_was_wrong(fake_openai, agents) -> None:
    fake_openai.replies = ["this is not json", '{"agentId": "urn:test:music", "reason": "music"}']
    router = LLMRouter(fake_llm(fake_openai))
    decision = await router.route("play jazz", candidates=agents)
    assert decision.agent_id == "urn:test:music" and decision.reason == "music"
    assert len(fake_openai.requests) == 2
    assert "not JSON" in fake_openai.requests[1]["messages"][-1]["content"]
    await router.aclose()


async def test_unknown_agent_is_never_returned(fake_openai, agents) -> None:
    fake_openai.replies = ['{"agentId": "urn:test:evil", "reason": "x"}'] * 3
    router = LLMRouter(fake_llm(fake_openai, attempts=3))
    with pytest.raises(LLMRoutingError, match="not one of the candidate ids"):
        await router.route("play jazz", candidates=agents)
    assert len(fake_openai.requests) == 3
    # An agent that exists but is not among these candidates is refused as well.
    fake_openai.replies = [
        '{"agentId": "urn:test:music", "reason": "x"}',
        '{"agentId": null, "reason": "none fit"}',
    ]
    decision = await router.route("play jazz", candidates=agents[:2])
    assert decision.agent_id is None and decision.reason == "none fit"
    schema = fake_openai.requests[-1]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["agentId"]["anyOf"][0]["enum"] == ["urn:test:weather", "urn:test:billing"]
    await router.aclose()


async def test_title_is_accepted_for_the_id(fake_openai, agents) -> None:
    fake_openai.replies = ['{"agentId": "travel AGENT", "reason": "trip"}']
    router = LLMRouter(fake_llm(fake_openai))
    assert (await router.route("fly to Rome", candidates=agents)).agent_id == "urn:test:travel"
    await router.aclose()


async def test_timeout_is_bounded_and_reported(fake_openai, agents) -> None:
    fake_openai.replies = [5.0, 5.0]
    router = LLMRouter(fake_llm(fake_openai, timeout=0.3, max_retries=1))
    start = time.monotonic()
    with pytest.raises(LLMRoutingError, match="Timeout"):
        await router.route("play jazz", candidates=agents)
    assert time.monotonic() - start < 4
    assert len(fake_openai.requests) == 2  # the first try and one retry
    await router.aclose()


async def test_rate_limit_and_server_errors_are_retried(fake_openai, agents) -> None:
    fake_openai.replies = [429, 503, '{"agentId": "urn:test:weather", "reason": "rain"}']
    router = LLMRouter(fake_llm(fake_openai, max_retries=2))
    assert (await router.route("rain?", candidates=agents)).agent_id == "urn:test:weather"
    fake_openai.replies = [429, 429, 429]
    with pytest.raises(LLMRoutingError, match="RateLimit"):
        await router.route("rain?", candidates=agents)
    await router.aclose()


async def test_fast_track_uses_the_llm_only_when_uncertain(fake_openai, minilm, agents) -> None:
    vector = VectorRouter(minilm, threshold=0.0)
    hybrid = HybridRouter(vector, fake_llm(fake_openai), confident=0.0, margin=0.0, shortlist=2)
    await hybrid.add(agents)
    confident = await hybrid.route("please refund my order")
    assert confident.method == "hybrid:vector" and confident.agent_id == "urn:test:billing"
    assert fake_openai.requests == []
    hybrid.confident = 2.0  # nothing is confident now
    fake_openai.replies = ['{"agentId": "urn:test:billing", "reason": "refund"}']
    decision = await hybrid.route("please refund my order")
    assert decision.method == "hybrid:llm" and decision.agent_id == "urn:test:billing"
    prompt = fake_openai.requests[0]["messages"][0]["content"]
    assert prompt.count("urn:test:") == 2  # only the vector shortlist is offered
    # When the LLM fails, the vector decision stands and says so.
    fake_openai.replies = ["garbage"] * 3
    fallback = await hybrid.route("please refund my order")
    assert fallback.method == "hybrid:vector" and fallback.agent_id == "urn:test:billing"
    assert "LLM failed" in fallback.reason
    await hybrid.aclose()


async def test_requirements_mode_matches_the_extracted_requirements(fake_openai, minilm, agents) -> None:
    hybrid = HybridRouter(VectorRouter(minilm, threshold=0.0), fake_llm(fake_openai), mode="requirements")
    await hybrid.add(agents)
    fake_openai.replies = ['{"requirements": ["music playback"]}']
    decision = await hybrid.route("could you put something on for me")
    assert decision.method == "hybrid:requirements" and decision.agent_id == "urn:test:music"
    assert decision.reason.startswith("requirements [music playback]")
    assert fake_openai.requests[0]["messages"][-1]["content"] == "could you put something on for me"
    fake_openai.replies = ['{"requirements": []}'] * 3  # no usable requirements: the raw query decides
    fallback = await hybrid.route("refund my order please")
    assert fallback.method == "hybrid:vector" and fallback.agent_id == "urn:test:billing"
    assert "LLM failed" in fallback.reason
    await hybrid.aclose()
