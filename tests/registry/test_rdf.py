"""JSON-LD -> RDF through the shape templates gives exactly the RDF of a full conversion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest

from registry._rdf_worker import Indexer

EXAMPLES = sorted((Path(__file__).parents[1] / "data" / "w3c-td11-examples").glob("*.json"))


def _canonical(quads: list[ox.Quad]) -> list[str]:
    assert all(q.graph_name == quads[0].graph_name for q in quads)

    # Blank node labels differ between conversions: compare with them masked.
    def show(term: Any) -> str:
        return "_:b" if isinstance(term, ox.BlankNode) else str(term)

    return sorted(" ".join(show(t) for t in (q.subject, q.predicate, q.object)) for q in quads)


@pytest.fixture
def rdf() -> Indexer:
    return Indexer(ox.Store())


def _variants(make_td: Any) -> list[dict[str, Any]]:
    docs = [json.loads(path.read_text()) for path in EXAMPLES]
    base = make_td()
    docs += [base, make_td(id="urn:other", title="Other", description="Something else")]
    relative = make_td(base="https://agents.example.com/")
    relative["actions"]["getWeather"]["forms"][0]["href"] = "weather"  # relative: IRI must resolve
    docs += [relative, make_td(id="tag:example.com,2024:x"), make_td(title="urn:x-wot-agents-slot:0")]
    docs += [
        make_td(**{"@type": ["lmos:Agent", "Thing"]}),
        make_td(securityDefinitions={"b": {"scheme": "bearer"}}),
    ]
    docs += [
        make_td(description='quotes " and \\ backslash\nnew line \u2028 é \x01'),
        make_td(title="Ünïcödé 🌦"),
    ]
    return [d for d in docs if isinstance(d.get("id"), str)]


def test_templates_reproduce_full_conversion(rdf: Indexer, make_td: Any) -> None:
    docs = _variants(make_td)
    assert len(docs) > 10
    for _ in range(2):  # the second round is served from the template cache
        for doc in docs:
            graph = ox.NamedNode(doc["id"])
            expected = [ox.Quad(q.subject, q.predicate, q.object, graph) for q in rdf.convert(doc)]
            text = rdf.templates.nquads(doc, doc["id"], "t")
            assert _canonical(list(ox.parse(text, format=ox.RdfFormat.N_QUADS))) == _canonical(expected), doc[
                "id"
            ]
    assert rdf.templates.hits >= len(docs)
    assert rdf.templates.fallbacks >= 1  # the relative href cannot be put back as is


def test_same_shape_is_converted_once(rdf: Indexer, make_td: Any) -> None:
    for i in range(50):
        rdf.templates.nquads(make_td(id=f"urn:example:{i}", title=f"Agent {i}"), f"urn:example:{i}", "t")
    assert rdf.templates.misses == 1 and rdf.templates.hits == 49
    assert rdf.templates.fallbacks == 0


def test_bulk_batches_replace_graphs_like_small_ones(tmp_path: Path, make_td: Any) -> None:
    def changes(title: str) -> list[tuple[str, bytes | None]]:
        return [
            (f"urn:example:{i}", json.dumps(make_td(id=f"urn:example:{i}", title=title)).encode())
            for i in range(300)
        ]

    indexer = Indexer(ox.Store(str(tmp_path / "rdf")))
    assert indexer.index(changes("First")) == []  # 300: the bulk loader
    quads = len(indexer.store)
    assert indexer.index(changes("Second")) == []  # replaces every graph
    assert indexer.index([("urn:example:0", None), ("urn:example:1", changes("Third")[1][1])]) == []
    assert len(indexer.store) == quads - quads // 300
    titles = {
        str(row["t"].value)
        for row in indexer.store.query(  # type: ignore[union-attr]
            "SELECT DISTINCT ?t WHERE { GRAPH ?g { ?s <https://www.w3.org/2019/wot/td#title> ?t } }"
        )
    }
    assert titles == {"Second", "Third"}
