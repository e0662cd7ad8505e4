from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.conftest import W3C_EXAMPLES, load_json
from wot_agents import (
    LMOS_CONTEXT,
    AgentDescription,
    Capability,
    DescriptionError,
    ValidationError,
)


@pytest.mark.parametrize("path", W3C_EXAMPLES, ids=lambda path: path.stem)
def test_w3c_examples_round_trip_unchanged(path: Any) -> None:
    document = load_json(path)
    assert AgentDescription.from_dict(document).to_dict() == document


def test_numbers_keep_their_json_spelling() -> None:
    schema = {"type": "integer", "minimum": 1, "maximum": 5.5, "multipleOf": 1}
    document = {
        "@context": "https://www.w3.org/2022/wot/td/v1.1",
        "title": "Dial",
        "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
        "security": "nosec_sc",
        "properties": {"level": {**schema, "forms": [{"href": "/level"}]}},
    }
    dumped = AgentDescription.from_dict(document).to_dict()
    assert json.dumps(dumped, sort_keys=True) == json.dumps(document, sort_keys=True)  # 1 stays 1, not 1.0


def test_lmos_agent_round_trips_unchanged(weather_agent: dict[str, Any]) -> None:
    model = AgentDescription.from_json(json.dumps(weather_agent))
    assert model.to_dict() == weather_agent
    assert json.loads(model.to_json()) == weather_agent


def test_lmos_terms_are_typed(weather_agent: dict[str, Any]) -> None:
    model = AgentDescription.from_dict(weather_agent)
    assert model.is_agent and model.kind == "agent"
    assert model.metadata is not None and model.metadata.vendor is not None
    assert model.metadata.vendor.name == "WeatherAI Inc."
    assert model.capabilities is not None
    capability = model.capabilities[0]
    assert isinstance(capability, Capability)
    assert capability.id == "urn:example:capability:weather:forecast"
    assert "will it rain tomorrow in Berlin?" in capability.examples
    assert model.supported_tenants == ["acme"]
    assert model.supported_channels == ["web", "app"]
    assert model.subset == "stable"
    form = model.actions["getWeather"].forms[0]  # type: ignore[index]
    assert form.method_name == "POST" and form.ops == ["invokeaction"]


def test_unknown_terms_are_kept_at_every_level(weather_agent: dict[str, Any]) -> None:
    document = copy.deepcopy(weather_agent)
    document["ex:rating"] = {"@value": 5}
    document["lmos:metadata"]["lmos:model"] = {"lmos:name": "gpt-4o"}
    document["lmos:capabilities"][0]["ex:cost"] = 0.2
    document["actions"]["getWeather"]["forms"][0]["cov:method"] = "GET"
    document["actions"]["getWeather"]["input"]["properties"]["question"]["maxLength"] = 500
    document["securityDefinitions"]["nosec_sc"]["ex:note"] = "open"
    assert AgentDescription.from_dict(document).to_dict() == document


def test_members_can_be_set_by_python_name() -> None:
    model = AgentDescription(
        context=LMOS_CONTEXT,
        type_="lmos:Agent",
        title="Echo",
        security="nosec_sc",
        security_definitions={"nosec_sc": {"scheme": "nosec"}},  # type: ignore[dict-item]
        capabilities=[Capability(id="urn:echo", examples=["say it again"])],
    )
    dumped = model.to_dict()
    assert dumped["@context"] == LMOS_CONTEXT
    assert dumped["securityDefinitions"] == {"nosec_sc": {"scheme": "nosec"}}
    assert dumped["lmos:capabilities"] == [{"id": "urn:echo", "examples": ["say it again"]}]


def test_plain_thing_is_not_an_agent() -> None:
    model = AgentDescription.from_dict(load_json(W3C_EXAMPLES[0]))
    assert not model.is_agent and model.kind == "thing"
    assert [kind for kind, _, _ in model.affordances()] == ["property", "action", "event"]


def test_shape_errors_point_at_the_member(weather_agent: dict[str, Any]) -> None:
    weather_agent["title"] = 3
    weather_agent["lmos:capabilities"][0]["examples"] = "not a list"
    with pytest.raises(ValidationError) as caught:
        AgentDescription.from_dict(weather_agent)
    pointers = {problem.pointer for problem in caught.value.problems}
    assert "/title" in pointers
    assert "/lmos:capabilities/0/examples" in pointers


def test_missing_title_is_reported() -> None:
    with pytest.raises(ValidationError) as caught:
        AgentDescription.from_dict({"@context": LMOS_CONTEXT, "security": "x", "securityDefinitions": {}})
    assert [problem.pointer for problem in caught.value.problems] == ["/title"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"title": "x",', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (b"\xff\xfe{", "not valid"),
        ("[" * 5000 + "]" * 5000, "nests deeper"),
    ],
)
def test_broken_json_is_a_clear_error(text: str | bytes, expected: str) -> None:
    with pytest.raises(DescriptionError, match=expected):
        AgentDescription.from_json(text)


def test_huge_document_is_refused_before_parsing() -> None:
    huge = json.dumps({"title": "x" * 2_000_000})
    with pytest.raises(DescriptionError, match="larger than the limit of 1000000 bytes"):
        AgentDescription.from_json(huge, max_bytes=1_000_000)
