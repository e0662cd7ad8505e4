"""Directory assertions of WoT Discovery checked to the letter: headers, content types, contexts,
expiry, unsupported features, federation (docs/directory-conformance.md lists them all).

Each test names the assertions it checks, e.g. [tdd-http-head].
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from registry import DirectorySettings
from wot_agents import DirectoryClient, validate

from .conftest import running_directory
from .test_things import _links, put

pytestmark = pytest.mark.usefixtures("store_kind")

TD = "application/td+json"
TD10 = "https://www.w3.org/2019/wot/td/v1"
TD11 = "https://www.w3.org/2022/wot/td/v1.1"
DISCOVERY = "https://www.w3.org/2022/wot/discovery"
PATCH = {"Content-Type": "application/merge-patch+json"}


async def test_write_answers_are_typed_as_the_directory_td_says(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    # [tdd-things-create-known-td-resp] [tdd-things-update-resp] [tdd-things-update-partial-resp]
    # [tdd-things-delete-resp] [tdd-things-create-anonymous-td-resp]: status, Location, and the
    # application/x-empty the directory's TD forms declare (7.3.2.4) on the empty bodies.
    td = make_td()
    url = f"{directory}/things/{td['id']}"
    answers = [await put(http, directory, td), await put(http, directory, td)]
    async with http.patch(url, data="{}", headers=PATCH) as r:
        answers.append(r)
    async with http.post(
        f"{directory}/things", data=json.dumps(make_td(id=None)), headers={"Content-Type": TD}
    ) as r:
        answers.append(r)
    async with http.delete(url) as r:
        answers.append(r)
    assert [r.status for r in answers] == [201, 204, 204, 201, 204]
    assert {r.headers["Content-Type"] for r in answers} == {"application/x-empty"}
    assert answers[0].headers["Location"] == f"/things/{td['id']}"
    assert answers[3].headers["Location"].startswith("/things/urn:uuid:")
    async with http.get(f"{directory}/") as r:
        actions = (await r.json())["actions"]
    for name in ("createThing", "updateThing", "partiallyUpdateThing", "deleteThing", "createAnonymousThing"):
        assert actions[name]["forms"][0]["response"]["contentType"] == "application/x-empty"


async def test_head_answers_the_get_headers(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    # [tdd-http-head] [exploration-server-http-head]: the same headers as GET, no body
    td = make_td()
    await put(http, directory, td)
    for path in (
        "/",
        "/.well-known/wot",
        "/things?limit=1",
        f"/things/{td['id']}",
        "/search/filter?q=weather",
    ):
        async with http.get(f"{directory}{path}") as got:
            body = await got.read()
        async with http.head(f"{directory}{path}") as head:
            assert await head.read() == b""
        assert head.status == got.status == 200, path
        assert head.headers["Content-Type"] == got.headers["Content-Type"], path
        assert head.headers.get("Link") == got.headers.get("Link"), path
        # GET /things/{id} adds registration.retrieved, whose length does not vary
        assert int(head.headers["Content-Length"]) == len(body), path
    async with http.head(f"{directory}/events") as head:
        assert head.status == 200 and head.headers["Content-Type"] == "text/event-stream"


async def test_unsupported_features_answer_404_and_405_with_allow(
    directory: str, http: aiohttp.ClientSession
) -> None:
    # [tdd-http-unsupported-feature] [tdd-http-error-response]: XPath search is not provided, so
    # /search/xpath is 404 whatever the method, and the directory's TD has no searchXPath action.
    for method in ("GET", "HEAD", "POST"):
        async with http.request(method, f"{directory}/search/xpath?query=/") as r:
            assert r.status == 404, method
            assert r.content_type == "application/problem+json"
    async with http.get(f"{directory}/") as r:
        assert "searchXPath" not in (await r.json())["actions"]
    for method, path, allowed in (
        ("PATCH", "/things", {"GET", "HEAD", "POST"}),
        ("DELETE", "/events", {"GET", "HEAD"}),
        ("POST", "/things/urn:x:1", {"GET", "HEAD", "PUT", "PATCH", "DELETE"}),
        ("PUT", "/search/jsonpath", {"GET", "HEAD"}),
    ):
        async with http.request(method, f"{directory}{path}", data="{}") as r:
            assert r.status == 405, (method, path)
            assert set(r.headers["Allow"].split(",")) == allowed, (method, path)
            problem = await r.json(content_type="application/problem+json")
            assert problem["status"] == 405 and problem["title"] == "Method Not Allowed"


async def test_context_injection_keeps_the_td_contexts_in_front(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    # [tdd-context-injection]; TD 1.1 5.3.1.1: a TD 1.0-compatible TD keeps 1.0 first, 1.1 second
    cases = {
        "urn:x:string": (TD11, [TD11, DISCOVERY]),
        "urn:x:td10": ([TD10, TD11, {"ex": "http://example.org/"}], [TD10, TD11, DISCOVERY, {"ex": "http://example.org/"}]),
        "urn:x:already": ([TD11, DISCOVERY], [TD11, DISCOVERY]),
    }  # fmt: skip
    for thing_id, (given, stored) in cases.items():
        td = make_td(id=thing_id, **{"@context": given})
        td = {k: v for k, v in td.items() if not k.startswith("lmos:")}
        assert (await put(http, directory, td)).status == 201, thing_id
        async with http.get(f"{directory}/things/{thing_id}") as r:
            assert (await r.json())["@context"] == stored, thing_id
    async with http.get(f"{directory}/") as r:
        assert (await r.json())["@context"][:3] == [TD10, TD11, DISCOVERY]  # its own TD too


async def test_absolute_times_need_an_offset_and_a_future(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    # [tdd-absolute-time] [tdd-validation-jsonschema] (the Discovery TD-extensions schema)
    td = make_td(registration={"expires": "2030-01-01T00:00:00"})
    async with http.put(
        f"{directory}/things/{td['id']}", data=json.dumps(td), headers={"Content-Type": TD}
    ) as r:
        assert r.status == 400
        fields = [e["field"] for e in (await r.json())["validationErrors"]]
    assert fields == ["registration.expires"]
    tomorrow = datetime.now(timezone(timedelta(hours=1))).replace(microsecond=0) + timedelta(days=1)
    td["registration"]["expires"] = tomorrow.isoformat()  # e.g. ...T13:00:00+01:00
    assert (await put(http, directory, td)).status == 201
    async with http.get(f"{directory}/things/{td['id']}") as r:
        stored = (await r.json())["registration"]["expires"]
    assert stored == tomorrow.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    # registrations that would be expired at once, or never valid, are refused
    for registration in ({"expires": "2020-01-01T00:00:00Z"}, {"ttl": 0}, {"ttl": -5}):
        td["registration"] = registration
        async with http.put(
            f"{directory}/things/{td['id']}", data=json.dumps(td), headers={"Content-Type": TD}
        ) as r:
            assert r.status == 400, registration
    async with http.get(f"{directory}/things/{td['id']}") as r:
        assert (await r.json())["registration"]["expires"] == stored  # unchanged


async def test_compressed_input_is_accepted(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    # [tdd-things-representation-alternate-input]: Content-Encoding gzip
    td = make_td()
    body = gzip.compress(json.dumps(td).encode())
    headers = {"Content-Type": TD, "Content-Encoding": "gzip"}
    async with http.put(f"{directory}/things/{td['id']}", data=body, headers=headers) as r:
        assert r.status == 201
    async with http.get(f"{directory}/things/{td['id']}") as r:
        assert (await r.json())["title"] == td["title"]
    bomb = gzip.compress(b'{"title": "' + b"x" * (8 * 1024 * 1024) + b'"}')  # 8 MB inflated, over the limit
    async with http.put(f"{directory}/things/urn:x:bomb", data=bomb, headers=headers) as r:
        assert r.status == 413


async def test_ttl_renewal_and_purge_event(http: aiohttp.ClientSession, make_td: Any) -> None:
    # [tdd-registrationinfo-expiry-purge]: an empty merge patch recomputes expires from ttl; the
    # purge is a deletion like any other, announced as thing_deleted.
    async with running_directory(purge_interval=0.1) as url, DirectoryClient(url) as client:
        thing_id = await client.register(make_td(), ttl=1)
        first = (await client.get(thing_id))["registration"]["expires"]
        await asyncio.sleep(0.05)
        await client.patch(thing_id, {})
        renewed = (await client.get(thing_id))["registration"]
        assert renewed["expires"] > first and renewed["ttl"] == 1
        events = client.events("thing_deleted", reconnect=False)
        event = await asyncio.wait_for(anext(events), 5)
        await events.aclose()
        assert (event.type, event.data) == ("thing_deleted", {"id": thing_id})
        async with http.get(f"{url}/things/{thing_id}") as r:
            assert r.status == 404


async def test_pagination_links_to_the_letter(http: aiohttp.ClientSession, make_td: Any) -> None:
    # [tdd-things-list-pagination-header-nextlink-attr]: the next link repeats the client's limit
    # even when the server sends smaller pages; [tdd-things-list-pagination-header-canonicallink]:
    # the etag changes when the collection does.
    async with running_directory(max_page=2) as url:
        for n in range(5):
            await put(http, url, make_td(id=f"urn:x:{n}"))
        async with http.get(f"{url}/things?limit=4") as r:
            page = await r.json()
            links = {link["rel"]: link for link in _links(r.headers.getall("Link"))}
        assert [td["id"] for td in page] == ["urn:x:0", "urn:x:1"]
        assert links["next"]["url"] == "/things?offset=2&limit=4"
        assert links["canonical"]["url"] == "/things"
        async with http.get(f"{url}/things?offset=4&limit=4&format=collection") as r:
            last = await r.json()
            links_after = {link["rel"]: link for link in _links(r.headers.getall("Link"))}
        assert "next" not in links_after and "next" not in last
        assert [td["id"] for td in last["members"]] == ["urn:x:4"] and last["total"] == 5
        assert links_after["canonical"]["etag"] == links["canonical"]["etag"]
        await put(http, url, make_td(id="urn:x:5"))
        async with http.get(f"{url}/things?limit=4") as r:
            changed = {link["rel"]: link for link in _links(r.headers.getall("Link"))}
        assert changed["canonical"]["etag"] != links["canonical"]["etag"]


async def test_anonymous_td_keeps_its_local_id_when_updated(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    # [tdd-anonymous-td-identifier]: the local id is in the TD wherever it is exposed
    async with DirectoryClient(directory) as client:
        thing_id = await client.register(make_td(id=None, title="First"))
        await client.update({**make_td(id=None, title="Second"), "id": thing_id})
        async with http.put(
            f"{directory}/things/{thing_id}",
            data=json.dumps(make_td(id=None, title="Third")),
            headers={"Content-Type": TD},
        ) as r:
            assert r.status == 204  # PUT without an id in the body: the URL names it
        assert (await client.get(thing_id))["id"] == thing_id
        assert await client.jsonpath("$[*].id") == [thing_id]
        assert [td["id"] for td in await client.search(q="weather")] == [thing_id]
        async with http.patch(f"{directory}/things/{thing_id}", data='{"id": null}', headers=PATCH) as r:
            assert r.status == 400  # the id cannot be patched away


async def test_write_without_credentials_is_401_with_a_bearer_challenge(make_td: Any) -> None:
    # [tdd-things-read-only-auth] [exploration-secboot-401] [tdd-http-error-response]
    async with running_directory(token="s3cret") as url, aiohttp.ClientSession() as http:
        td = make_td()
        async with http.put(
            f"{url}/things/{td['id']}", data=json.dumps(td), headers={"Content-Type": TD}
        ) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await r.json(content_type="application/problem+json"))["title"] == "Unauthorized"
        async with http.get(f"{url}/") as r:
            own = await r.json()
        assert own["actions"]["createThing"]["forms"][0]["security"] == ["bearer_sc"]
        assert "security" not in own["properties"]["things"]["forms"][0]  # reads stay open


async def test_sparql_federation_when_enabled(make_td: Any) -> None:
    # [tdd-search-sparql-federation] [tdd-search-sparql-federation-version]: SPARQL 1.1 SERVICE to
    # another directory's SPARQL endpoint (off by default: tests/registry/test_search.py)
    async with (
        running_directory() as remote,
        running_directory(sparql_services=[f"{remote}/search/sparql"]) as local,
    ):
        async with DirectoryClient(remote) as client:
            await client.register(make_td(id="urn:remote:1", title="Far away"))
        async with DirectoryClient(local) as client:
            await client.register(make_td(id="urn:local:1", title="Close by"))
            pattern = "?t <https://www.w3.org/2019/wot/td#title> ?title"
            rows = await client.sparql(
                f"SELECT ?t ?title WHERE {{ {{ {pattern} }} UNION "
                f"{{ SERVICE <{remote}/search/sparql> {{ {pattern} }} }} }} ORDER BY ?t"
            )
    assert [(b["t"]["value"], b["title"]["value"]) for b in rows["results"]["bindings"]] == [
        ("urn:local:1", "Close by"),
        ("urn:remote:1", "Far away"),
    ]


async def test_problem_details_are_utf_8(directory: str, http: aiohttp.ClientSession) -> None:
    # [tdd-http-error-response] [tdd-http-error-response-utf-8]: a detail naming a non-ASCII id
    async with http.get(f"{directory}/things/urn:x:caf%C3%A9-%E7%81%AF") as r:
        assert r.status == 404 and r.content_type == "application/problem+json" and r.charset == "utf-8"
        problem = json.loads((await r.read()).decode("utf-8"))
    assert "urn:x:café-灯" in problem["detail"]
    assert problem == {**problem, "type": "about:blank", "title": "Not Found", "status": 404}


async def test_accept_language_picks_the_default_language(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    # [exploration-server-http-alternate-content] 7.3.2: a TD in another default language by
    # Accept-Language; TD 1.1 6.3.2: @language says which, title/description take its text.
    td = make_td(
        title="Weather",
        titles={"en": "Weather", "de": "Wetter", "zh-Hans": "天气"},
        descriptions={"en": "Forecasts", "de": "Vorhersagen"},
    )
    action = next(iter(td["actions"]))
    td["actions"][action]["titles"] = {"en": "Forecast", "de": "Vorhersage"}
    await put(http, directory, td)
    url = f"{directory}/things/{td['id']}"

    async def get(accept_language: str | None) -> tuple[dict[str, Any], aiohttp.ClientResponse]:
        headers = {"Accept-Language": accept_language} if accept_language else {}
        async with http.get(url, headers=headers) as r:
            return await r.json(content_type=TD), r

    plain, r = await get(None)
    assert plain["title"] == "Weather" and "Content-Language" not in r.headers
    german, r = await get("fr;q=0.2, de-CH, en;q=0.5")  # de-CH falls back to de
    assert r.headers["Content-Language"] == "de" and r.headers["Vary"] == "Accept-Language"
    assert german["title"] == "Wetter" and german["description"] == "Vorhersagen"
    assert german["actions"][action]["title"] == "Vorhersage"
    assert german["@context"][:-1] == plain["@context"][:-1]
    assert german["@context"][-1] == {**plain["@context"][-1], "@language": "de"}  # the one Map
    assert list(german)[-1] == "registration" and "retrieved" in german["registration"]
    assert german["titles"] == td["titles"]  # the translations stay
    assert validate(german) == []
    chinese, r = await get("zh-hans-cn")
    assert chinese["title"] == "天气" and chinese["description"] == td["description"]
    assert r.headers["Content-Language"] == "zh-Hans"
    for header in ("fr", "*", "de;q=0"):
        same, r = await get(header)
        assert "Content-Language" not in r.headers, header
        assert {**same, "registration": None} == {**plain, "registration": None}, header


async def test_reads_can_be_protected_too(make_td: Any) -> None:
    # [tdd-things-read-only-auth] and 9.1 "access to private directories SHOULD be limited by using
    # access controls": with protect_reads every endpoint but the directory's TD needs the token.
    async with running_directory(token="s3cret", protect_reads=True) as url, aiohttp.ClientSession() as http:
        async with http.get(f"{url}/.well-known/wot") as r:
            own = await r.json()
        assert (
            own["security"] == "bearer_sc" and own["securityDefinitions"]["bearer_sc"]["scheme"] == "bearer"
        )
        for method, path in (
            ("GET", "/things"),
            ("GET", "/events"),
            ("POST", "/search/sparql"),
            ("HEAD", "/things"),
        ):
            async with http.request(method, f"{url}{path}") as r:
                assert r.status == 401, path
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
        async with DirectoryClient(url, token="s3cret") as client:
            thing_id = await client.register(make_td())
            assert [td["id"] async for td in client.list()] == [thing_id]
            assert await client.jsonpath("$[*].id") == [thing_id]
    try:
        DirectorySettings(protect_reads=True)
    except ValueError as exc:
        assert "token" in str(exc)
    else:
        raise AssertionError("protect_reads without a token was accepted")


async def test_url_ids_and_chunked_bodies(directory: str, http: aiohttp.ClientSession, make_td: Any) -> None:
    # 7.3.2 percent-encoding of ids that are URLs themselves; 10.1 chunked transfer of a body.
    thing_id = "http://example.com/things/1?a=b#c"
    td = make_td(id=thing_id)

    async def chunks() -> AsyncIterator[bytes]:
        data = json.dumps(td).encode()
        for start in range(0, len(data), 256):
            yield data[start : start + 256]

    encoded = quote(thing_id, safe="")
    async with http.put(f"{directory}/things/{encoded}", data=chunks(), headers={"Content-Type": TD}) as r:
        assert r.status == 201 and r.request_info.headers.get("Transfer-Encoding") == "chunked"
        location = r.headers["Location"]
    async with http.get(f"{directory}{location}") as r:
        assert r.status == 200 and (await r.json())["id"] == thing_id
    async with DirectoryClient(directory) as client:
        assert (await client.get(thing_id))["id"] == thing_id
        assert [t["id"] async for t in client.list()] == [thing_id]
        await client.delete(thing_id)
        assert not await client.exists(thing_id)


async def test_validation_errors_as_in_example_10(directory: str, http: aiohttp.ClientSession) -> None:
    # [tdd-validation-result] [tdd-validation-response]: the two errors of the spec's Example 10
    td = {
        "@context": TD11,
        "title": "Example 10",
        "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
        "properties": {"status": {"type": "string", "forms": [{"href": 1}]}},
    }
    async with http.post(f"{directory}/things", data=json.dumps(td), headers={"Content-Type": TD}) as r:
        assert r.status == 400 and r.content_type == "application/problem+json"
        problem = await r.json(content_type="application/problem+json")
    assert problem["title"] == "Bad Request" and problem["status"] == 400
    assert problem["detail"] == "The input did not pass the JSON Schema validation"
    errors = problem["validationErrors"]
    assert [e["field"] for e in errors] == ["(root)", "properties.status.forms.0.href"]
    assert all(set(e) == {"field", "description"} for e in errors)
    assert "security" in errors[0]["description"]


async def test_sparql_dataset_parameters_are_refused_not_ignored(
    directory: str, http: aiohttp.ClientSession
) -> None:
    # [tdd-http-unsupported-feature]: SPARQL 1.1 Protocol default-graph-uri / named-graph-uri
    # customize an existing API and are not supported: 501, rather than answering another question.
    sparql = f"{directory}/search/sparql"
    query = "SELECT * WHERE { ?s ?p ?o } LIMIT 1"
    async with http.get(sparql, params={"query": query, "default-graph-uri": "urn:x"}) as r:
        assert r.status == 501 and r.content_type == "application/problem+json"
    async with http.post(sparql, data={"query": query, "named-graph-uri": "urn:x"}) as r:
        assert r.status == 501
    async with http.post(
        f"{sparql}?default-graph-uri=urn:x", data=query, headers={"Content-Type": "application/sparql-query"}
    ) as r:
        assert r.status == 501
        assert (await r.json(content_type="application/problem+json"))["title"] == "Not Implemented"
    async with http.get(sparql, params={"query": query}) as r:
        assert r.status == 200
