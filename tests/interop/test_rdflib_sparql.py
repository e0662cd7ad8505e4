"""A third-party SPARQL 1.1 Protocol client against the directory: rdflib's ``SPARQLStore``.

rdflib asks for the SPARQL XML results format by default (``Accept:
application/sparql-results+xml``) and RDF/XML or Turtle for graphs, and parses what the Content-Type
says. Its HTTP client (urllib) blocks, so it runs in a thread while the directory serves on the
event loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rdflib import Graph, URIRef
from rdflib.plugins.stores.sparqlstore import SPARQLStore

from tests.conftest import EXAMPLE
from tests.servers import running_directory
from wot_agents import DirectoryClient

TITLE = "<https://www.w3.org/2019/wot/td#title>"


def _query(endpoint: str, query: str, return_format: str, method: str) -> Any:
    graph = Graph(store=SPARQLStore(endpoint, returnFormat=return_format, method=method))
    return graph.query(query)


async def test_rdflib_sparql_store_queries_the_directory() -> None:
    # [tdd-search-sparql-version] [tdd-search-sparql-method-get] [tdd-search-sparql-method-post]
    # [tdd-search-sparql-resp-select-ask] [tdd-search-sparql-resp-describe-construct]
    async with running_directory() as url:
        async with DirectoryClient(url) as client:
            for thing_id, title in (("urn:a", "Alpha"), ("urn:b", "Beta")):
                await client.register({**json.loads(EXAMPLE.read_text()), "id": thing_id, "title": title})
        endpoint = f"{url}/search/sparql"
        select = f"SELECT ?t ?title WHERE {{ ?t {TITLE} ?title }} ORDER BY ?t"
        for return_format, method in (("xml", "GET"), ("json", "POST"), ("csv", "POST_FORM")):
            rows = await asyncio.to_thread(_query, endpoint, select, return_format, method)
            assert [(str(r.t), str(r.title)) for r in rows] == [("urn:a", "Alpha"), ("urn:b", "Beta")]
        asked = await asyncio.to_thread(_query, endpoint, f"ASK {{ <urn:b> {TITLE} ?x }}", "xml", "GET")
        assert asked.askAnswer is True
        construct = f"CONSTRUCT {{ ?t {TITLE} ?x }} WHERE {{ ?t {TITLE} ?x }}"
        graph = await asyncio.to_thread(_query, endpoint, construct, "xml", "GET")
        assert {s for s, _, _ in graph} == {URIRef("urn:a"), URIRef("urn:b")}
