from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.conftest import W3C_EXAMPLES, load_json
from wot_agents import AgentDescription, Problem, ValidationError, check, validate, validate_json


@pytest.mark.parametrize("path", W3C_EXAMPLES, ids=lambda path: path.stem)
def test_w3c_examples_are_valid(path: Any) -> None:
    assert validate(load_json(path)) == []


def test_lmos_agent_is_valid(weather_agent: dict[str, Any]) -> None:
    assert validate(weather_agent) == []
    check(weather_agent)


def test_a_model_is_validated_as_its_document(weather_agent: dict[str, Any]) -> None:
    assert validate(AgentDescription.from_dict(weather_agent)) == []
    broken = AgentDescription.from_dict({**weather_agent, "security": "undefined_sc"})
    assert [problem.pointer for problem in validate(broken)] == ["/security"]
    with pytest.raises(ValidationError, match="/security"):
        check(broken)


def _broken(document: dict[str, Any], mutate: Any) -> dict[str, Any]:
    broken = copy.deepcopy(document)
    mutate(broken)
    return broken


CASES: list[tuple[str, Any, str, str]] = [
    ("missing title", lambda d: d.pop("title"), "", '"title" is a required property'),
    ("title not a string", lambda d: d.update(title=42), "/title", "not of type"),
    ("wrong context", lambda d: d.update({"@context": "https://example.com/ctx"}), "/@context", ""),
    ("no security", lambda d: d.pop("security"), "", '"security" is a required property'),
    (
        "form without href",
        lambda d: d["actions"]["getWeather"]["forms"][0].pop("href"),
        "/actions/getWeather/forms/0",
        "href",
    ),
    (
        "unknown op",
        lambda d: d["actions"]["getWeather"]["forms"][0].update(op="fly"),
        "/actions/getWeather/forms/0/op",
        "",
    ),
    (
        "forms not an array",
        lambda d: d["actions"]["getWeather"].update(forms={"href": "x"}),
        "/actions/getWeather/forms",
        "not of type",
    ),
    (
        "safe not a boolean",
        lambda d: d["actions"]["getWeather"].update(safe="yes"),
        "/actions/getWeather/safe",
        "not of type",
    ),
    (
        "unknown security scheme type",
        lambda d: d["securityDefinitions"]["nosec_sc"].update(scheme=7),
        "/securityDefinitions/nosec_sc",
        "",
    ),
    ("capability without id", lambda d: d["lmos:capabilities"][0].pop("id"), "/lmos:capabilities/0", '"id"'),
    (
        "examples not strings",
        lambda d: d["lmos:capabilities"][0].update(examples=[1]),
        "/lmos:capabilities/0/examples/0",
        "not of type",
    ),
    (
        "tenants not unique",
        lambda d: d.update({"lmos:supportedTenants": ["a", "a"]}),
        "/lmos:supportedTenants",
        "",
    ),
    (
        "vendor url not a URI",
        lambda d: d["lmos:metadata"]["lmos:vendor"].update({"lmos:url": "not a uri"}),
        "/lmos:metadata/lmos:vendor/lmos:url",
        "",
    ),
    (
        "registration with a bad date",
        lambda d: d.update(registration={"created": "yesterday"}),
        "/registration/created",
        "date-time",
    ),
]


@pytest.mark.parametrize(("name", "mutate", "pointer", "fragment"), CASES, ids=[case[0] for case in CASES])
def test_invalid_documents_get_a_pointer_and_message(
    weather_agent: dict[str, Any], name: str, mutate: Any, pointer: str, fragment: str
) -> None:
    problems = validate(_broken(weather_agent, mutate))
    assert problems, f"{name} was accepted"
    matching = [problem for problem in problems if problem.pointer == pointer and fragment in problem.message]
    assert matching, problems


def test_every_problem_is_reported_not_just_the_first(weather_agent: dict[str, Any]) -> None:
    weather_agent["title"] = 1
    weather_agent["security"] = 2
    weather_agent["lmos:subset"] = ""
    pointers = {problem.pointer for problem in validate(weather_agent)}
    assert {"/title", "/security", "/lmos:subset"} <= pointers


def test_check_raises_with_all_problems(weather_agent: dict[str, Any]) -> None:
    weather_agent.pop("title")
    weather_agent["version"] = "1.0"
    with pytest.raises(ValidationError) as caught:
        check(weather_agent, source="weather.json")
    assert len(caught.value.problems) >= 2
    assert str(caught.value).startswith("weather.json: invalid Thing Description")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{", "not valid JSON"),
        ("", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ("null", "JSON object"),
    ],
)
def test_validate_json_reports_unparsable_text_at_the_root(text: str, fragment: str) -> None:
    problems = validate_json(text)
    assert len(problems) == 1 and problems[0].pointer == "" and fragment in problems[0].message


def test_validate_json_refuses_huge_documents() -> None:
    problems = validate_json(b" " * 100 + b"{}", max_bytes=50)
    assert problems == [Problem("", "document is 102 bytes, larger than the limit of 50 bytes")]


def test_pointers_escape_slashes_and_tildes(weather_agent: dict[str, Any]) -> None:
    weather_agent["actions"]["a/b~c"] = {"forms": "nope"}
    assert any(problem.pointer == "/actions/a~1b~0c/forms" for problem in validate(weather_agent))


# -- TD 1.1 rules beyond the JSON Schema (issue 15; the Thingweb playground checks them too) --------
def _first_action(td: dict[str, Any]) -> str:
    return next(iter(td["actions"]))


RULES: list[tuple[str, Any, list[str]]] = [
    ("thing security not defined", lambda d: d.update(security=["nosec_sc", "oauth"]), ["/security/1"]),
    ("thing security string", lambda d: d.update(security="basic"), ["/security"]),
    (
        "form security not defined",
        lambda d: d["actions"][_first_action(d)]["forms"][0].update(security="psk"),
        ["/actions/{action}/forms/0/security"],
    ),
    (
        "combo names not defined",
        lambda d: d["securityDefinitions"].update(both={"scheme": "combo", "allOf": ["nosec_sc", "x"]}),
        ["/securityDefinitions/both/allOf/1"],
    ),
    (
        "two type links",
        lambda d: d.update(
            links=[
                {"rel": "type", "href": "https://example.com/a.tm.json"},
                {"rel": "type", "href": "b.tm.json"},
            ]
        ),
        ["/links/1/rel"],
    ),
]


@pytest.mark.parametrize(("mutate", "pointers"), [c[1:] for c in RULES], ids=[c[0] for c in RULES])
def test_rules_the_schema_cannot_express(
    weather_agent: dict[str, Any], mutate: Any, pointers: list[str]
) -> None:
    broken = _broken(weather_agent, mutate)
    action = _first_action(weather_agent)
    found = [p for p in validate(broken) if "securityDefinitions" in p.message or "rel" in p.message]
    assert [p.pointer for p in found] == [p.format(action=action) for p in pointers]


def test_defined_security_names_pass(weather_agent: dict[str, Any]) -> None:
    td = copy.deepcopy(weather_agent)
    td["securityDefinitions"]["bearer_sc"] = {"scheme": "bearer"}
    td["securityDefinitions"]["either"] = {"scheme": "combo", "oneOf": ["nosec_sc", "bearer_sc"]}
    td["security"] = ["either"]
    td["actions"][_first_action(td)]["forms"][0]["security"] = ["bearer_sc"]
    td["links"] = [{"rel": "type", "href": "https://example.com/a.tm.json"}]
    assert validate(td) == []


def test_repeated_member_names_are_reported_with_pointers(weather_agent: dict[str, Any]) -> None:
    text = json.dumps(weather_agent)
    action = _first_action(weather_agent)
    text = text.replace('"title": ', '"title": "Twice", "title": ', 1)  # the Thing's own title first
    text = text.replace(f'"{action}": {{', f'"{action}": {{"title": "a", "title": "b", ', 1)
    problems = validate_json(text)
    assert [p.pointer for p in problems if "more than once" in p.message] == sorted(
        ["/title", f"/actions/{action}/title"]
    )
    assert validate_json(json.dumps(weather_agent)) == []
