"""One scenario, every binding: the consumer reaches the same agent over HTTP, WebSocket and MQTT."""

from __future__ import annotations

import asyncio

import pytest

from wot_agents import Agent, AgentDescription, PayloadError, RemoteError, RequestTimeout, consume, validate
from wot_agents.bindings import RunningAgent

from .conftest import BINDINGS

pytestmark = pytest.mark.parametrize("binding", BINDINGS)


async def test_actions(td: AgentDescription, binding: str) -> None:
    async with consume(td, prefer=[binding]) as thing:
        assert await thing.invoke_action("add", {"a": 2, "b": 40}) == 42
        assert await thing.invoke_action("add", {"a": 2}) == 3


async def test_many_concurrent_invocations(td: AgentDescription, binding: str) -> None:
    async with consume(td, prefer=[binding]) as thing:
        results = await asyncio.gather(*(thing.invoke_action("add", {"a": i, "b": i}) for i in range(50)))
    assert results == [2 * i for i in range(50)]


async def test_properties(td: AgentDescription, agent: Agent, binding: str) -> None:
    async with consume(td, prefer=[binding]) as thing:
        assert await thing.read_property("temperature") == 20.0
        await thing.write_property("temperature", 25.5)
        for _ in range(100):  # MQTT writes are published, then applied: the value arrives soon after
            if await thing.read_property("temperature") == 25.5:
                break
            await asyncio.sleep(0.01)
        assert await agent.properties["temperature"].read() == 25.5
        assert await thing.read_property("temperature") == 25.5
        assert await thing.read_property("station") == "Berlin"


async def test_observe_property(td: AgentDescription, agent: Agent, binding: str) -> None:
    temperature = agent.properties["temperature"]
    async with consume(td, prefer=[binding]) as thing, await thing.observe_property("temperature") as values:

        async def change() -> None:
            for step in range(200):
                temperature.set(30.0 + step)
                await asyncio.sleep(0.02)

        changing = asyncio.create_task(change())
        try:
            seen = [await anext(values) for _ in range(3)]
        finally:
            changing.cancel()
    assert all(isinstance(value, float) for value in seen)
    assert any(value >= 30.0 for value in seen)


async def test_subscribe_event(td: AgentDescription, agent: Agent, binding: str) -> None:
    alert = agent.events["alert"]
    async with consume(td, prefer=[binding]) as thing, await thing.subscribe_event("alert") as events:

        async def emit() -> None:
            for step in range(200):
                await alert.emit({"level": step, "text": "storm"})
                await asyncio.sleep(0.02)

        emitting = asyncio.create_task(emit())
        try:
            first, second = await anext(events), await anext(events)
        finally:
            emitting.cancel()
    assert first["text"] == "storm" and second["level"] > first["level"]


async def test_invalid_input_is_refused_before_sending(td: AgentDescription, binding: str) -> None:
    async with consume(td, prefer=[binding]) as thing:
        with pytest.raises(PayloadError) as caught:
            await thing.invoke_action("add", {"a": "two"})
    assert caught.value.problems[0].pointer == "/a"


async def test_the_server_validates_too(td: AgentDescription, binding: str) -> None:
    async with consume(td, prefer=[binding], validate=False) as thing:
        with pytest.raises(RemoteError) as caught:
            await thing.invoke_action("add", {"a": "two"})
    assert caught.value.status == 400


async def test_a_failing_action_is_a_remote_error(td: AgentDescription, binding: str) -> None:
    async with consume(td, prefer=[binding]) as thing:
        with pytest.raises(RemoteError) as caught:
            await thing.invoke_action("broken")
    assert caught.value.status == 500
    assert "the weather service is down" in str(caught.value)


async def test_timeout(td: AgentDescription, binding: str) -> None:
    async with consume(td, prefer=[binding], timeout=0.2) as thing:
        with pytest.raises(RequestTimeout):
            await thing.invoke_action("wait", {"seconds": 5})


async def test_forms_of_every_binding_are_in_one_valid_td(running: RunningAgent, binding: str) -> None:
    td = running.description
    assert validate(td.to_dict()) == []
    scheme = {"http": "http", "ws": "ws", "mqtt": "mqtt"}[binding]
    for _, name, affordance in td.affordances():
        assert any(form.href.startswith(scheme + "://") for form in affordance.forms), name
    assert running.base_urls[binding].startswith(scheme + "://")
