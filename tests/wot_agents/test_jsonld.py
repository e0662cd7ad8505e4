from __future__ import annotations

import re
import time
from typing import Any

import pytest
from rdflib import URIRef

from tests.conftest import W3C_EXAMPLES, load_json
from wot_agents import ContextLoader, JsonLdError, jsonld

TD = "https://www.w3.org/2019/wot/td#"


def test_expansion_uses_the_shipped_td_context(weather_agent: dict[str, Any]) -> None:
    expanded = jsonld.expand(weather_agent)
    node = expanded[0]
    assert node["@id"] == weather_agent["id"]
    assert node[TD + "title"][0]["@value"] == "WeatherAgent"
    assert TD + "hasActionAffordance" in node


@pytest.mark.parametrize("path", W3C_EXAMPLES[:6], ids=lambda path: path.stem)
def test_w3c_examples_convert_to_rdf_offline(path: Any) -> None:
    nquads = jsonld.to_nquads(load_json(path))
    assert f"<{TD}title>" in nquads


def test_graph_has_the_thing_and_its_forms(weather_agent: dict[str, Any]) -> None:
    graph = jsonld.to_graph(weather_agent)
    thing = URIRef(weather_agent["id"])
    titles = [str(o) for o in graph.objects(thing, URIRef(TD + "title"))]
    assert titles == ["WeatherAgent"]
    targets = {
        str(o) for o in graph.objects(None, URIRef("https://www.w3.org/2019/wot/hypermedia#hasTarget"))
    }
    assert targets == {"https://weatherai.example.com/weather"}


def test_compaction_round_trips_the_title(weather_agent: dict[str, Any]) -> None:
    compacted = jsonld.compact(jsonld.expand(weather_agent), "https://www.w3.org/2022/wot/td/v1.1")
    assert compacted["title"] == "WeatherAgent"


def test_unknown_remote_context_fails_at_once_without_fetching() -> None:
    document = {"@context": ["https://www.w3.org/2022/wot/td/v1.1", "https://schema.org/"], "title": "x"}
    started = time.monotonic()
    with pytest.raises(JsonLdError, match=re.escape("https://schema.org/")):
        jsonld.expand(document)
    assert time.monotonic() - started < 2  # refused locally, not after a network timeout


def test_contexts_can_be_added_explicitly() -> None:
    loader = ContextLoader({"https://example.com/ctx": {"@context": {"color": "https://example.com/color"}}})
    expanded = jsonld.expand({"@context": "https://example.com/ctx", "color": "red"}, loader=loader)
    assert expanded[0]["https://example.com/color"][0]["@value"] == "red"
    assert "http://example.com/ctx" in loader  # the http and https spellings name one context
    with pytest.raises(JsonLdError):
        jsonld.expand({"@context": "https://example.com/ctx", "color": "red"})  # not in the default loader


def test_lmos_context_document_is_served() -> None:
    expanded = jsonld.expand(
        {"@context": "https://eclipse.dev/lmos/protocol/v1", "@type": "Agent", "subset": "stable"}
    )
    assert expanded[0]["@type"] == ["https://eclipse.dev/lmos/protocol/v1Agent"]
