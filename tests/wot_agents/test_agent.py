from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

import pytest
from pydantic import BaseModel

from wot_agents import (
    TD10_CONTEXT,
    TD_CONTEXT,
    Agent,
    AgentDescription,
    Capability,
    Form,
    PayloadError,
    Vendor,
    validate,
)
from wot_agents._agent import QUEUE_SIZE


class Forecast(BaseModel):
    city: str
    temperature: float
    summary: str | None = None


@dataclass
class Feedback:
    rating: int
    comment: str = ""


class FakeBinding:
    """A FormProvider as the binding servers implement it."""

    def forms(self, kind: str, name: str) -> list[Form]:
        return [Form(href=f"http://127.0.0.1:1/{kind}/{name}", **{"mqv:topic": f"{kind}/{name}"})]

    def thing_forms(self) -> list[Form]:
        return [Form(href="http://127.0.0.1:1/properties", op=["readallproperties"])]


@pytest.fixture
def agent() -> Agent:
    agent = Agent(
        "Weather",
        id="urn:example:weather",
        description="Answers weather questions.",
        version="1.2.0",
        vendor=Vendor(name="WeatherAI", url="https://weather.example.com"),
        capabilities=[Capability(id="urn:weather:forecast", name="Forecast", examples=["will it rain?"])],
        tenants=["acme"],
        channels=["web"],
        subset="stable",
    )

    @agent.action(safe=True, idempotent=True)
    async def forecast(city: str, days: int = 1, mode: Literal["text", "voice"] = "text") -> Forecast:
        """Tells the forecast for a city.

        Details nobody needs in the TD.
        """
        return Forecast(city=city, temperature=20.0 + days)

    @agent.action
    def rate(feedback: Feedback) -> str:
        return f"{feedback.rating}:{feedback.comment}"

    @agent.action(name="reset")
    def reset_everything() -> None:
        return None

    agent.property("unit", Literal["celsius", "fahrenheit"], default="celsius", observable=True)
    agent.property("uptime", int, getter=lambda: 42, description="Seconds since start.")
    agent.event("alert", str, description="Severe weather warnings.")
    return agent


def test_description_is_a_valid_lmos_agent(agent: Agent) -> None:
    document = agent.description(forms=[FakeBinding()]).to_dict()
    assert validate(document) == []
    assert document["@type"] == "lmos:Agent"
    assert document["id"] == "urn:example:weather"
    assert document["version"] == {"instance": "1.2.0"}
    assert document["lmos:metadata"] == {
        "lmos:vendor": {"lmos:name": "WeatherAI", "lmos:url": "https://weather.example.com"}
    }
    assert document["lmos:capabilities"][0]["examples"] == ["will it rain?"]
    assert document["lmos:supportedTenants"] == ["acme"] and document["lmos:subset"] == "stable"
    assert document["security"] == "nosec_sc"
    # the mqv: terms of the forms get their prefix declared; htv: is in the TD 1.1 context
    assert document["@context"][:2] == [TD10_CONTEXT, TD_CONTEXT]  # TD 1.0 consumers (node-wot) too
    assert document["@context"][-1]["mqv"] == "http://www.w3.org/2018/wot/mqtt#"
    assert AgentDescription.from_dict(document).to_dict() == document


def test_action_schemas_come_from_type_hints(agent: Agent) -> None:
    actions = agent.description().to_dict()["actions"]
    forecast = actions["forecast"]
    assert forecast["description"] == "Tells the forecast for a city."
    assert forecast["safe"] is True and forecast["idempotent"] is True
    assert forecast["input"]["required"] == ["city"]
    mode = forecast["input"]["properties"]["mode"]
    assert mode == {"default": "text", "enum": ["text", "voice"], "type": "string"}
    assert forecast["output"]["properties"]["summary"]["oneOf"] == [{"type": "string"}, {"type": "null"}]
    assert "$ref" not in str(actions) and "$defs" not in str(actions)
    assert actions["rate"]["input"]["required"] == ["rating"]  # the dataclass is the whole input
    assert "input" not in actions["reset"] and "output" not in actions["reset"]


def test_property_and_event_affordances(agent: Agent) -> None:
    document = agent.description().to_dict()
    unit = document["properties"]["unit"]
    assert unit == {"enum": ["celsius", "fahrenheit"], "type": "string", "observable": True, "forms": []}
    assert document["properties"]["uptime"]["readOnly"] is True
    assert document["events"]["alert"]["data"] == {"type": "string"}


async def test_invoke_validates_input_and_returns_json(agent: Agent) -> None:
    assert await agent.actions["forecast"].invoke({"city": "Berlin", "days": 2}) == {
        "city": "Berlin",
        "temperature": 22.0,
        "summary": None,
    }
    assert await agent.actions["rate"].invoke({"rating": 5, "comment": "great"}) == "5:great"
    assert await agent.actions["reset"].invoke() is None
    with pytest.raises(PayloadError) as caught:
        await agent.actions["forecast"].invoke({"days": "many", "color": "red"})
    assert {problem.pointer for problem in caught.value.problems} == {"/city", "/days", "/color"}


async def test_invalid_output_is_the_agents_fault() -> None:
    agent = Agent("Broken")

    @agent.action
    def count() -> int:
        return "many"  # type: ignore[return-value]

    with pytest.raises(PayloadError, match="agent produced an invalid output"):
        await agent.actions["count"].invoke()


async def test_properties_validate_writes_and_notify_observers(agent: Agent) -> None:
    unit = agent.properties["unit"]
    observed = unit.observe()
    reader = asyncio.ensure_future(anext(observed))
    await asyncio.sleep(0)
    await unit.write("fahrenheit")
    assert await asyncio.wait_for(reader, 1) == "fahrenheit"
    assert await unit.read() == "fahrenheit"
    with pytest.raises(PayloadError):
        await unit.write("kelvin")
    assert await unit.read() == "fahrenheit"  # a refused write changes nothing
    with pytest.raises(PayloadError, match="read-only"):
        await agent.properties["uptime"].write(1)
    assert await agent.properties["uptime"].read() == 42
    await observed.aclose()


async def test_events_reach_every_subscriber_and_slow_ones_never_block(agent: Agent) -> None:
    alert = agent.events["alert"]
    fast, slow = alert.subscribe(), alert.subscribe()
    assert alert.subscribers == 2  # registered at once: nothing emitted from here on is missed
    seen: list[str] = []

    async def keep_up() -> None:
        async for data in fast:
            seen.append(data)
            if len(seen) == 1000:
                return

    reader = asyncio.create_task(keep_up())
    for index in range(1000):  # the slow subscriber never reads: emitting must not wait for it
        await alert.emit(f"storm {index}")
        await asyncio.sleep(0)
    await asyncio.wait_for(reader, 1)
    assert seen == [f"storm {index}" for index in range(1000)]
    kept = [await anext(slow) for _ in range(QUEUE_SIZE)]
    assert kept == [f"storm {index}" for index in range(1000 - QUEUE_SIZE, 1000)]
    async with fast, slow:
        pass
    assert alert.subscribers == 0


def test_duplicate_names_are_refused(agent: Agent) -> None:
    with pytest.raises(ValueError, match="already has an affordance named 'alert'"):
        agent.property("alert", int)


class Node(BaseModel):
    children: list[Node] = []


def test_recursive_types_are_refused() -> None:
    agent = Agent("Tree")
    with pytest.raises(TypeError, match="refers to itself"):

        @agent.action
        def grow(root: Node) -> None: ...


def test_default_id_is_a_fresh_urn() -> None:
    first, second = Agent("A"), Agent("A")
    assert first.id.startswith("urn:uuid:") and first.id != second.id


def test_security_is_declared_by_the_caller(agent: Agent) -> None:
    document = agent.description(
        forms=[FakeBinding()],
        security_definitions={"bearer_sc": {"scheme": "bearer", "format": "jwt"}},
        security="bearer_sc",
    ).to_dict()
    assert document["securityDefinitions"] == {"bearer_sc": {"scheme": "bearer", "format": "jwt"}}
    assert validate(document) == []
