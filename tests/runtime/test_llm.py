"""The LLM in the runtime, against the real llama.cpp server (SmolLM2): LLM routing, and a
clarifying question instead of AGENT_NOT_FOUND when no agent fits (LMOS's disambiguation)."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.agents import Deployment, body, chat_agent, post

LLM = {"llm_model": "smollm2", "llm_response_format": "json_object+schema"}


async def test_a_turn_no_agent_fits_gets_a_clarifying_question(
    deployment: Deployment, http: aiohttp.ClientSession, llama_server: str
) -> None:
    await deployment.add(chat_agent("weather"), http=True)
    await deployment.add(chat_agent("billing"), http=True)
    url = await deployment.start(llm_base_url=llama_server, **LLM)
    status, reply = await post(http, url, body("what is the boiling point of tungsten"), conversation="q")
    assert status == 200, reply
    assert reply["agent"] is None and reply["routing"]["method"] == "clarification"
    assert reply["content"].strip()
    async with http.get(f"{url}/apis/v1/acme/chat/q") as answer:
        (stored,) = (await answer.json())["turns"]
    assert (stored["routing"]["method"], stored["agent"]["id"], stored["content"]) == (
        "clarification",
        "",
        reply["content"],
    )
    # The clarification is no agent to stick to: the answer to it is routed afresh.
    status, reply = await post(
        http, url, body("I meant: will it rain in Berlin tomorrow?"), conversation="q", turn="t2"
    )
    assert (status, reply["agent"]["name"]) == (200, "WeatherAgent"), reply


async def test_llm_routing(deployment: Deployment, http: aiohttp.ClientSession, llama_server: str) -> None:
    await deployment.add(chat_agent("weather"), http=True)
    await deployment.add(chat_agent("billing"), http=True)
    url = await deployment.start(router="llm", llm_base_url=llama_server, **LLM)
    status, reply = await post(http, url, body("will it rain in Paris tomorrow?"))
    assert status == 200, reply
    routing: dict[str, Any] = reply["routing"]
    # A 135M model's choice is not asserted; that the LLM made it (or asked back) is.
    assert routing["method"] in ("llm", "clarification")
    if routing["method"] == "llm":
        assert reply["agent"]["name"] in ("WeatherAgent", "BillingAgent")
        assert reply["content"] == f"{reply['agent']['name']}: will it rain in Paris tomorrow?"


async def test_hybrid_routing(deployment: Deployment, http: aiohttp.ClientSession, llama_server: str) -> None:
    await deployment.add(chat_agent("weather"), http=True)
    await deployment.add(chat_agent("billing"), http=True)
    url = await deployment.start(router="hybrid", llm_base_url=llama_server, **LLM)
    status, reply = await post(http, url, body("will it rain in Paris tomorrow?"))
    assert status == 200, reply
    assert reply["routing"]["method"] in ("hybrid:vector", "hybrid:llm", "clarification")
