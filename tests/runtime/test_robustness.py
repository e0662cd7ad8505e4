"""Forwarding robustness: an agent killed mid-conversation, retries on another instance, breakers."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

import aiohttp

from runtime import Breaker
from tests.agents import Deployment, body, chat_agent, post


async def test_an_agent_killed_mid_conversation(deployment: Deployment, http: aiohttp.ClientSession) -> None:
    async with AsyncExitStack() as first, AsyncExitStack() as second:
        instances = {
            "urn:test:agent:weather-a": first,
            "urn:test:agent:weather-b": second,
        }
        for agent_id, stack in instances.items():
            running = await stack.enter_async_context(
                chat_agent("weather", agent_id=agent_id).serve(http=True)
            )
            await deployment.register(running)
        await deployment.add(chat_agent("billing"), ws=True)
        url = await deployment.start(breaker_threshold=1, breaker_cooldown=600)

        async def ask(query: str, n: int) -> tuple[int, dict[str, Any]]:
            return await post(http, url, body(query), conversation="storm", turn=f"t{n}")

        status, reply = await ask("will it rain tomorrow?", 1)
        assert status == 200, reply
        answered = reply["agent"]["id"]
        other = next(agent_id for agent_id in instances if agent_id != answered)
        await instances[answered].aclose()  # the agent that holds the conversation dies
        status, reply = await ask("and the day after tomorrow, will it rain?", 2)
        assert (status, reply["agent"]["id"]) == (200, other), reply  # retried on the other instance
        assert reply["content"].startswith("WeatherAgent: ")
        await instances[other].aclose()  # now both are gone
        status, reply = await ask("and next week, will it rain?", 3)
        assert (status, reply["errorCode"]) == (502, "AGENT_CLIENT_EXCEPTION"), reply
        # Both instances are out of routing now: the next turn does not wait on a dead agent.
        status, reply = await post(http, url, body("rain?", explicit="WeatherAgent"), conversation="storm")
        assert (status, reply["errorCode"]) == (404, "AGENT_NOT_FOUND"), reply
        status, reply = await ask("show me my last invoice", 4)
        assert (status, reply["agent"]["name"]) == (200, "BillingAgent"), reply
        async with http.get(f"{url}/apis/v1/acme/chat/storm") as answer:
            turns = (await answer.json())["turns"]
        assert [turn["agent"]["id"] for turn in turns] == [answered, other, "urn:test:agent:billing"]


async def test_a_per_agent_timeout(deployment: Deployment, http: aiohttp.ClientSession) -> None:
    async def slow(request: Any, stream: Any) -> str:
        await asyncio.sleep(5)
        return "late"

    await deployment.add(chat_agent("travel", answer=slow), http=True)
    await deployment.add(chat_agent("weather"), http=True)
    url = await deployment.start(router="explicit", agent_timeouts={"urn:test:agent:travel": 0.3})
    status, reply = await post(http, url, body("a flight", explicit="TravelAgent"))
    assert (status, reply["errorCode"]) == (504, "AGENT_CLIENT_EXCEPTION")
    status, reply = await post(http, url, body("rain", explicit="WeatherAgent"))
    assert status == 200


def test_the_breaker_opens_after_failures_and_closes_after_a_success() -> None:
    now = [0.0]
    breaker = Breaker(threshold=2, cooldown=10, clock=lambda: now[0])
    breaker.failed("a")
    assert breaker.available("a")
    breaker.failed("a")
    assert not breaker.available("a") and breaker.open == ["a"]
    now[0] = 10.0
    assert breaker.available("a")  # tried again after the cooldown...
    breaker.failed("a")
    assert not breaker.available("a")  # ...and out again at the next failure
    now[0] = 20.0
    breaker.succeeded("a")
    breaker.failed("a")
    assert breaker.available("a")  # a success reset the count
