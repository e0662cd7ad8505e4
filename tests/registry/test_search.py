"""The Search API (7.3.2.3): SPARQL, JSONPath and the JSON filter, and the directory's own TD."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any
from xml.etree import ElementTree

import aiohttp
import pytest
from pyoxigraph import RdfFormat, parse

from wot_agents import DirectoryClient, DirectoryError, validate

from .conftest import running_directory

pytestmark = pytest.mark.usefixtures("store_kind")

SPARQL = "/search/sparql"
TITLE = "<https://www.w3.org/2019/wot/td#title>"


@pytest.fixture
async def filled(directory: str, make_td: Any) -> AsyncIterator[str]:
    async with DirectoryClient(directory) as client:
        await client.register(make_td(id="urn:a", title="Alpha", **{"lmos:supportedTenants": ["acme"]}))
        await client.register(make_td(id="urn:b", title="Beta rain", **{"lmos:supportedTenants": ["globex"]}))
        await client.register(
            make_td(
                id="urn:c",
                title="Gamma",
                **{"@type": "Thing", "lmos:supportedChannels": ["voice"], "lmos:subset": "canary"},
                **{"lmos:supportedTenants": ["initech"]},
                securityDefinitions={"b": {"scheme": "bearer"}},
                security="b",
            )
        )
    yield directory


async def test_sparql_get_post_form_and_result_types(filled: str, http: aiohttp.ClientSession) -> None:
    # [tdd-search-sparql] [tdd-search-sparql-version] [tdd-search-large-tdds]
    # [tdd-search-sparql-method-get] [tdd-search-sparql-method-post]
    # [tdd-search-sparql-resp-select-ask] [tdd-search-sparql-resp-describe-construct]
    select = f'SELECT ?t WHERE {{ ?t {TITLE} "Gamma"@en }}'
    async with http.get(f"{filled}{SPARQL}", params={"query": select}) as r:
        assert r.status == 200 and r.content_type == "application/json"
        assert [b["t"]["value"] for b in (await r.json())["results"]["bindings"]] == ["urn:c"]
    async with http.post(
        f"{filled}{SPARQL}", data=select, headers={"Content-Type": "application/sparql-query"}
    ) as r:
        assert (await r.json())["results"]["bindings"][0]["t"]["value"] == "urn:c"
    async with http.post(f"{filled}{SPARQL}", data={"query": f"ASK {{ <urn:a> {TITLE} ?x }}"}) as r:
        assert r.content_type == "application/json" and (await r.json())["boolean"] is True
    construct = f"CONSTRUCT {{ ?t {TITLE} ?x }} WHERE {{ ?t {TITLE} ?x }}"
    async with http.get(f"{filled}{SPARQL}", params={"query": construct}) as r:
        assert r.status == 200 and r.content_type == "application/ld+json"
        assert {node["@id"] for node in await r.json()} == {"urn:a", "urn:b", "urn:c"}
    async with http.get(f"{filled}{SPARQL}", params={"query": "DESCRIBE <urn:a>"}) as r:
        assert r.content_type == "application/ld+json"
    # one named graph per TD
    async with http.get(
        f"{filled}{SPARQL}", params={"query": "SELECT DISTINCT ?g WHERE { GRAPH ?g {?s ?p ?o} }"}
    ) as r:
        assert sorted(b["g"]["value"] for b in (await r.json())["results"]["bindings"]) == [
            "urn:a",
            "urn:b",
            "urn:c",
        ]


@pytest.mark.parametrize(
    "query",
    [
        "INSERT DATA { <urn:x> <urn:p> 1 }",
        "PREFIX td: <https://www.w3.org/2019/wot/td#>\nDELETE WHERE { ?s ?p ?o }",
        "DROP ALL",
        "SELECT * WHERE { SERVICE <http://127.0.0.1:1/sparql> { ?s ?p ?o } }",
        "SELECT WHERE",
    ],
)
async def test_sparql_refuses_updates_federation_and_bad_syntax(
    filled: str, http: aiohttp.ClientSession, query: str
) -> None:
    # [tdd-search-sparql-error]
    async with http.get(f"{filled}{SPARQL}", params={"query": query}) as r:
        assert r.status == 400
        assert r.content_type == "application/problem+json"
    async with http.get(f"{filled}{SPARQL}", params={"query": f"ASK {{ ?s {TITLE} ?o }}"}) as r:
        assert (await r.json())["boolean"] is True  # nothing was changed


async def test_sparql_result_cap(make_td: Any) -> None:
    async with running_directory(result_cap=5) as url, aiohttp.ClientSession() as http:
        async with DirectoryClient(url) as client:
            await client.register(make_td())
        async with http.get(f"{url}{SPARQL}", params={"query": "SELECT * WHERE { ?s ?p ?o }"}) as r:
            assert r.status == 400 and "5 results" in (await r.json(content_type=None))["detail"]


async def test_jsonpath(filled: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{filled}/search/jsonpath", params={"query": "$[?@.title=='Beta rain'].id"}) as r:
        assert r.status == 200 and r.content_type == "application/json"
        assert await r.json() == ["urn:b"]
    async with http.get(f"{filled}/search/jsonpath", params={"query": "$[*].title"}) as r:
        assert await r.json() == ["Alpha", "Beta rain", "Gamma"]
    async with http.get(
        f"{filled}/search/jsonpath", params={"query": "$[?@['lmos:subset']=='canary'].id"}
    ) as r:
        assert await r.json() == ["urn:c"]
    async with http.get(
        f"{filled}/search/jsonpath", params={"query": "$[?@.title=='Alpha' || @.id=='urn:c'].id"}
    ) as r:
        assert await r.json() == ["urn:a", "urn:c"]
    async with http.get(f"{filled}/search/jsonpath", params={"query": "$[?@.title=="}) as r:
        assert r.status == 400 and r.content_type == "application/problem+json"


@pytest.mark.parametrize(
    "query",
    [
        "$[?@.title=='Alpha'].id",
        "$[?@.title=='Alpha' && @.id=='urn:a'].id",
        "$[?(@.title=='Alpha') && @.actions].title",
        "$[?'Gamma'==@.title]",
        "$[?@.title=='Alpha', 0].id",
        "$[?@.title=='Alpha' || @.title=='Gamma'].id",
        "$[?!(@.title=='Alpha')].id",
        "$[?@.title!='Alpha'].id",
        "$[?@.title=='Alph\\u0061'].id",
        "$[?@.title=='x'].id",
        # parenthesised conjunctions and nested paths (a byte search of the stored text)
        "$[?(@.title=='Beta rain' && @.id=='urn:b')].id",
        "$[?@.securityDefinitions.b.scheme=='bearer'].id",
        "$[?@['lmos:supportedTenants'][0]=='acme'].id",
        "$[?(@.actions.getWeather.forms[0].contentType=='application/json' && 'Gamma'==@.title)].title",
        "$[?@.description=='say \"hi\"'].id",
        # disjunctions of pre-selectable conjunctions, match() with a literal pattern
        "$[?@.title=='Alpha' || @.securityDefinitions.b.scheme=='bearer'].id",
        "$[?(@.title=='Beta rain' && @.id=='urn:b') || 'Gamma'==@.title].title",
        "$[?(@.title=='Alpha' || @.title=='Gamma')].id",
        "$[?@.title=='Alpha' || @.actions].id",
        "$[?@.title=='Alpha' || !@.actions].id",
        "$[?@.title=='x||y' || @.title=='Gamma'].id",
        "$[?match(@.title, 'Gamma')].id",
        "$[?match(@.title, 'Gamm.') || match(@.title, 'Alpha')].id",
        "$[?match(@['lmos:supportedTenants'][0], 'acme') && @.title=='Alpha'].id",
    ],
)
async def test_jsonpath_preselection_gives_the_scan_result(filled: str, query: str) -> None:
    import jsonpath_rfc9535

    async with DirectoryClient(filled) as client:
        documents = [td async for td in client.list()]
        expected = jsonpath_rfc9535.compile(query).find(documents).values()
        found = await client.jsonpath(query)
    strip = lambda v: json.loads(json.dumps(v).replace("retrieved", "_"))  # noqa: E731
    assert [strip(v) if isinstance(v, dict) else v for v in found] == expected or (
        all(isinstance(v, dict) for v in found) and [v["id"] for v in found] == [v["id"] for v in expected]
    )


async def test_json_filter(filled: str, http: aiohttp.ClientSession) -> None:
    async def ids(**params: Any) -> list[str]:
        async with http.get(f"{filled}/search/filter", params=params) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
            assert body["@type"] == "ThingCollection"
            return [td["id"] for td in body["members"]]

    assert await ids(tenant="acme") == ["urn:a"]
    assert await ids(type="lmos:agent") == ["urn:a", "urn:b"]  # case-insensitive
    assert await ids(q="beta") == ["urn:b"]
    assert await ids(security="bearer") == ["urn:c"]
    assert await ids(scheme="https", subset="canary") == ["urn:c"]
    assert await ids(sort="-title") == ["urn:c", "urn:b", "urn:a"]
    assert await ids(limit="1", offset="1") == ["urn:b"]
    assert await ids(filter=json.dumps({"or": [{"tenant": "globex"}, {"channel": "voice"}]})) == [
        "urn:b",
        "urn:c",
    ]
    assert await ids(
        filter=json.dumps({"not": {"type": "thing"}}), capability="urn:example:capability:weather:forecast"
    ) == ["urn:a", "urn:b"]
    request = {
        "filter": {"and": [{"q": "weather"}, {"tenant": ["acme", "globex"]}]},
        "sort": ["-id"],
        "limit": 1,
    }
    async with http.post(f"{filled}/search/filter", json=request) as r:
        body = await r.json()
    assert body["total"] == 2 and [td["id"] for td in body["members"]] == ["urn:b"] and "next" in body
    for bad in (
        {"filter": {"colour": "red"}},
        {"filter": {"or": []}},
        {"sort": ["size"]},
        {"filter": {"tenant": 3}},
    ):
        async with http.post(f"{filled}/search/filter", json=bad) as r:
            assert r.status == 400, bad
            assert r.content_type == "application/problem+json"


async def test_json_filter_refuses_unknown_query_parameters(filled: str, http: aiohttp.ClientSession) -> None:
    # A typo must not widen the answer to every description (it did: 200 with all of them).
    async with http.get(f"{filled}/search/filter", params={"capabilty": "forecast"}) as r:
        assert r.status == 400 and r.content_type == "application/problem+json"
        detail = (await r.json())["detail"]
    assert "'capabilty' (did you mean 'capability'?)" in detail
    async with http.get(f"{filled}/search/filter", params={"capability": "forecast", "colour": "red"}) as r:
        assert r.status == 400 and "'colour'" in (await r.json())["detail"]


async def test_own_td_and_openapi(directory: str, http: aiohttp.ClientSession) -> None:
    # [introduction-well-known-uri] [introduction-well-known-path] [introduction-well-known-thing-description]
    # [introduction-direct-directory-description] [exploration-directory-description-type]
    # [exploration-server-http-method] [exploration-server-http-resp]
    # [exploration-server-http-resp-content-type] [exploration-server-http-resp-json]
    for path in ("/", "/.well-known/wot"):
        async with http.get(f"{directory}{path}") as r:
            assert r.content_type == "application/td+json"
            td = await r.json()
        assert td["@type"] == "ThingDirectory" and validate(td) == []
        assert "things" in td["properties"]
        assert {"createThing", "retrieveThing", "searchSPARQL", "searchJSONPath"} <= set(td["actions"])
        assert {"thingCreated", "thingUpdated", "thingDeleted"} == set(td["events"])
        assert td["base"] == f"{directory}/"
    async with http.get(f"{directory}/openapi.json") as r:
        spec = await r.json()
    assert spec["openapi"].startswith("3.") and "/search/filter" in spec["paths"]


async def test_slow_event_consumer_is_dropped_not_waited_for(make_td: Any, store_kind: str) -> None:
    import time

    if store_kind == "kubernetes":
        pytest.skip("counts event ids from 1 (embedded stores); tests/kubernetes tests replay by version")

    async with (
        running_directory(event_queue=5, event_write_timeout=0.5) as url,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(f"{url}/events?diff=true") as stream, DirectoryClient(url) as client:
            started = time.monotonic()
            for i in range(200):  # ~10 MB of events that nobody reads meanwhile
                await client.register(make_td(id=f"urn:slow:{i:03}", description="x" * 50_000))
            assert time.monotonic() - started < 20  # writers were not held up
            data = await asyncio.wait_for(stream.content.read(), 10)  # the server ended the stream
        frames = [f for f in data.split(b"\n\n") if f.startswith(b"event:")]
        assert len(frames) < 200
        last = frames[-1].split(b"\nid: ")[1].decode() if frames else "0"
        async with DirectoryClient(url) as client:  # ... and the consumer resumes: nothing lost
            seen = [
                e async for e in _take(client.events(last_event_id=last, reconnect=False), 200 - int(last))
            ]
        assert [e.data["id"] for e in seen] == [f"urn:slow:{i:03}" for i in range(int(last), 200)]


async def _take(events: Any, n: int) -> AsyncIterator[Any]:
    count = 0
    async for event in events:
        yield event
        count += 1
        if count == n:
            return


async def test_jsonpath_time_limit_and_cap(make_td: Any) -> None:
    async with running_directory(query_timeout=0.05, result_cap=50) as url, DirectoryClient(url) as client:
        for i in range(100):
            await client.register(make_td(id=f"urn:limit:{i:03}"))
        with pytest.raises(DirectoryError) as caught:
            await client.jsonpath("$..*")  # every node of every TD: far more than 50 results
        assert caught.value.status == 400
        with pytest.raises(DirectoryError) as caught:
            await client.jsonpath("$[?@..[?@..[?@..[?@.nothing]]]]")  # slow: nested descents
        assert caught.value.status == 400 and "limit" in caught.value.problem["detail"]


async def test_sparql_result_formats_by_accept(filled: str, http: aiohttp.ClientSession) -> None:
    # [tdd-search-sparql-version] (SPARQL 1.1 Protocol content negotiation) with the 7.3.2.3.3
    # defaults kept: application/json for SELECT/ASK and application/ld+json for CONSTRUCT.
    select = f"SELECT ?t ?title WHERE {{ ?t {TITLE} ?title }} ORDER BY ?t"

    async def ask(query: str, accept: str) -> tuple[str, str]:
        async with http.get(f"{filled}{SPARQL}", params={"query": query}, headers={"Accept": accept}) as r:
            assert r.status == 200
            return r.content_type, await r.text()

    kind, text = await ask(select, "application/sparql-results+xml")
    assert kind == "application/sparql-results+xml"
    ns = {"s": "http://www.w3.org/2005/sparql-results#"}
    rows = ElementTree.fromstring(text).findall("s:results/s:result", ns)
    assert [r.find("s:binding[@name='t']/s:uri", ns).text for r in rows] == ["urn:a", "urn:b", "urn:c"]  # type: ignore[union-attr]
    literal = rows[1].find("s:binding[@name='title']/s:literal", ns)
    assert literal is not None and literal.text == "Beta rain"
    assert literal.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    kind, text = await ask(select, "text/csv")
    assert kind == "text/csv" and list(csv.reader(io.StringIO(text)))[:2] == [
        ["t", "title"],
        ["urn:a", "Alpha"],
    ]
    kind, text = await ask(select, "text/tab-separated-values")
    assert text.splitlines()[:2] == ["?t\t?title", '<urn:a>\t"Alpha"@en']
    kind, text = await ask(f"ASK {{ <urn:a> {TITLE} ?x }}", "application/sparql-results+xml;q=0.9, text/html")
    assert kind == "application/sparql-results+xml" and "<boolean>true</boolean>" in text
    kind, text = await ask(select, "text/html, application/json;q=0.1")
    assert kind == "application/json" and len(json.loads(text)["results"]["bindings"]) == 3
    construct = f"CONSTRUCT {{ ?t {TITLE} ?x }} WHERE {{ ?t {TITLE} ?x }}"
    for accept, fmt in (("text/turtle", RdfFormat.TURTLE), ("application/rdf+xml", RdfFormat.RDF_XML)):
        kind, text = await ask(construct, accept)
        assert kind == accept
        assert {t.subject.value for t in parse(text.encode(), format=fmt)} == {"urn:a", "urn:b", "urn:c"}
    kind, _ = await ask(construct, "*/*")
    assert kind == "application/ld+json"


def test_the_value_index_finds_strings_at_any_depth_across_rebuilds() -> None:
    from registry._index import FieldIndex

    index = FieldIndex()
    td = lambda i, word: {"id": f"urn:v:{i}", "a": [{"b": {"c": f"{word}-{i % 7}"}}]}  # noqa: E731
    for i in range(600):  # past the rebuild threshold: the sorted arrays are searched
        index._add(f"urn:v:{i}", td(i, "deep"))
    assert index.with_value("deep-3") == {f"urn:v:{i}" for i in range(600) if i % 7 == 3}
    index._remove("urn:v:3")  # changes since the build are looked at one by one
    index._add("urn:v:4", td(3, "other"))
    index._add("urn:v:600", td(3, "deep"))
    expected = {f"urn:v:{i}" for i in range(601) if i % 7 == 3 and i != 3} - {"urn:v:4"}
    assert index.with_value("deep-3") == expected | {"urn:v:600"}
    assert index.with_value("other-3") == {"urn:v:4"}
    assert index.with_value("absent") == set()


def test_the_title_filter_sees_changes_before_and_after_a_rebuild() -> None:
    from registry._index import FieldIndex

    index = FieldIndex()
    index.load([])
    for i in range(600):
        index._add(f"urn:t:{i}", {"id": f"urn:t:{i}", "title": f"Agent {i}"})
    with_59 = {f"urn:t:{i}" for i in range(600) if "59" in str(i)}  # every word somewhere in the title
    assert index.search({"title": "agent 59"}) == with_59
    index._remove("urn:t:59")
    index._add("urn:t:700", {"id": "urn:t:700", "title": "Renamed 59"})
    assert index.search({"title": "59"}) == with_59 - {"urn:t:59"} | {"urn:t:700"}
    assert index.search({"title": "renamed"}) == {"urn:t:700"}
    for i in range(300):  # past a fiftieth: joined again
        index._add(f"urn:t:{800 + i}", {"id": f"urn:t:{800 + i}", "title": f"Late {i}"})
    assert index.search({"title": "late 299"}) == {"urn:t:1099"}
    assert index.search({"title": "renamed"}) == {"urn:t:700"}


def test_jsonpath_preselection_of_disjunctions() -> None:
    from registry._jsonpath import Preselection, preselection

    either = "$[?(@.title=='A' && @.id=='urn:a') || @.forms[0].href=='x' || match(@.title, 'B')].id"
    assert preselection(either) == [
        Preselection([("title", "A"), ("id", "urn:a")], ["A", "urn:a"]),
        Preselection([], ["x"]),
        Preselection([], ["B"]),
    ]
    assert preselection("$[?(@.title=='A' || @.title=='B')]") == [
        Preselection([("title", "A")], ["A"]),
        Preselection([("title", "B")], ["B"]),
    ]
    # A conjunction without an equality could select anything; a regular expression is no equality.
    assert preselection("$[?@.title=='A' || @.actions].id") is None
    assert preselection("$[?match(@.title, 'A.')].id") is None
    assert preselection("$[?@.title=='A', 0].id") is None
    assert preselection("$[?@.a.b==10 || 2.5==@.c].id") == [Preselection([], [10]), Preselection([], [2.5])]


async def test_jsonpath_number_equalities_are_preselected_like_strings(directory: str, make_td: Any) -> None:
    import jsonpath_rfc9535

    async with DirectoryClient(directory) as client:
        for i, rank in enumerate([1, 2.5, 1.0, -0.0, 10**20]):
            await client.register(make_td(id=f"urn:n{i}", title=f"N{i}", **{"lmos:rank": {"value": rank}}))
        documents = [td async for td in client.list()]
        for query in (
            "$[?@['lmos:rank'].value==1].id",
            "$[?@['lmos:rank'].value==1.0].id",
            "$[?2.5==@['lmos:rank'].value].id",
            "$[?@['lmos:rank'].value==0 || @.title=='N1'].id",
            "$[?@['lmos:rank'].value==1e20].id",
            "$[?@['lmos:rank'].value==3].id",
        ):
            expected = jsonpath_rfc9535.compile(query).find(documents).values()
            assert await client.jsonpath(query) == expected, query


def test_the_text_filters_find_what_a_scan_finds_through_changes() -> None:
    import random

    from registry._index import FieldIndex

    rng = random.Random(15)
    alphabet = ["ab", "abc", "b", "ca", "x\x00y", "Z", "ä", "12", "3,", "-"]

    def text() -> str:
        return " ".join("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 3))) for _ in range(3))

    index = FieldIndex()
    index.load([])
    documents: dict[str, dict[str, Any]] = {}
    for step in range(3000):
        thing_id = f"urn:r:{rng.randrange(400)}"
        index._remove(thing_id)
        if rng.random() < 0.2:
            documents.pop(thing_id, None)
        else:
            documents[thing_id] = {"id": thing_id, "title": text(), "description": text()}
            index._add(thing_id, documents[thing_id])
        if step % 50 == 0:
            words = " ".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 3)))
            for field, members in (("title", ("title",)), ("q", ("title", "description"))):
                expected = {
                    i
                    for i, td in documents.items()
                    if all(w in "\n".join(td[m] for m in members).lower() for w in words.lower().split())
                }
                assert index.search({field: words}) == expected, (field, words)
