"""The Things API (WoT Discovery 7.3.2.1) against a real directory on loopback.

Each test names the spec assertions it checks, e.g. [tdd-things-create-known-td-resp].
"""

from __future__ import annotations

import io
import json
import re
import uuid
from typing import Any

import aiohttp
import pytest

from tests.servers import eventually

pytestmark = pytest.mark.usefixtures("store_kind")

TD = "application/td+json"


async def put(http: aiohttp.ClientSession, url: str, td: dict[str, Any], **kw: Any) -> aiohttp.ClientResponse:
    async with http.put(
        f"{url}/things/{td['id']}", data=json.dumps(td), headers={"Content-Type": TD}, **kw
    ) as r:
        await r.read()
        return r


async def test_put_creates_then_updates(directory: str, http: aiohttp.ClientSession, make_td: Any) -> None:
    # [tdd-things-create-known-td] [tdd-things-create-known-td-resp] [tdd-things-create-known-contenttype]
    # [tdd-things-update] [tdd-things-update-resp] [tdd-things-update-contenttype] [tdd-things-crud]
    # [tdd-things-default-representation]
    td = make_td()
    assert (await put(http, directory, td)).status == 201
    td["title"] = "Renamed"
    assert (await put(http, directory, td)).status == 204
    async with http.get(f"{directory}/things/{td['id']}") as r:
        # [tdd-things-retrieve] [tdd-things-retrieve-resp] [tdd-things-retrieve-resp-content-type]
        assert r.status == 200
        assert r.content_type == TD
        stored = await r.json()
    assert stored["title"] == "Renamed"
    # [tdd-context-injection] [tdd-absolute-time]
    assert "https://www.w3.org/2022/wot/discovery" in stored["@context"]
    assert stored["@context"][0] == "https://www.w3.org/2022/wot/td/v1.1"
    registration = stored["registration"]
    for key in ("created", "modified", "retrieved"):
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", registration[key])
    assert registration["created"] <= registration["modified"]


async def test_anonymous_td_gets_a_uuid_urn(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    # [tdd-things-create-anonymous-td] [tdd-things-create-anonymous-id] [tdd-things-create-anonymous-td-resp]
    # [tdd-things-create-anonymous-contenttype]
    # [tdd-anonymous-td-identifier] [tdd-anonymous-td-local-uuid]
    async with http.post(
        f"{directory}/things", data=json.dumps(make_td(id=None)), headers={"Content-Type": TD}
    ) as r:
        assert r.status == 201
        location = r.headers["Location"]
    thing_id = location.rsplit("/things/", 1)[1]
    assert uuid.UUID(thing_id.removeprefix("urn:uuid:")).version == 4
    async with http.get(f"{directory}{location}") as r:
        assert (await r.json())["id"] == thing_id
    async with http.get(f"{directory}/things") as r:
        assert [td["id"] for td in await r.json()] == [thing_id]


async def test_post_with_id_is_refused(directory: str, http: aiohttp.ClientSession, make_td: Any) -> None:
    # [tdd-things-create-known-vs-anonymous]
    async with http.post(
        f"{directory}/things", data=json.dumps(make_td()), headers={"Content-Type": TD}
    ) as r:
        assert r.status == 400
        assert r.content_type == "application/problem+json"


async def test_invalid_td_gets_validation_errors(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    # [tdd-validation-syntactic] [tdd-validation-jsonschema] [tdd-validation-result] [tdd-validation-response]
    # [tdd-validation-response-utf-8] [tdd-http-error-response] [tdd-http-error-response-utf-8]
    td = make_td(security=None, title=42)
    async with http.put(
        f"{directory}/things/{td['id']}", data=json.dumps(td), headers={"Content-Type": TD}
    ) as r:
        assert r.status == 400
        assert r.content_type == "application/problem+json"
        assert r.charset == "utf-8"
        problem = json.loads((await r.read()).decode("utf-8"))
    assert problem["status"] == 400 and problem["title"] == "Bad Request"
    fields = {e["field"] for e in problem["validationErrors"]}
    assert "title" in fields and "(root)" in fields
    assert all(isinstance(e["description"], str) and e["description"] for e in problem["validationErrors"])
    async with http.get(f"{directory}/things/{td['id']}") as r:
        assert r.status == 404  # nothing stored


async def test_patch_merges_and_validates(directory: str, http: aiohttp.ClientSession, make_td: Any) -> None:
    # [tdd-things-update-partial] [tdd-things-update-partial-mergepatch] [tdd-things-update-partial-partialtd]
    # [tdd-things-update-partial-resp] [tdd-things-update-partial-contenttype]
    td = make_td(base="http://10.0.0.1/")
    await put(http, directory, td)
    url = f"{directory}/things/{td['id']}"
    patch = {"title": "Patched", "description": None, "lmos:subset": "canary"}
    async with http.patch(
        url, data=json.dumps(patch), headers={"Content-Type": "application/merge-patch+json"}
    ) as r:
        assert r.status == 204
    async with http.get(url) as r:
        stored = await r.json()
    assert stored["title"] == "Patched" and "description" not in stored and stored["lmos:subset"] == "canary"
    assert stored["actions"] == td["actions"]
    async with http.patch(
        url, data=json.dumps({"title": 1}), headers={"Content-Type": "application/merge-patch+json"}
    ) as r:
        assert r.status == 400
        assert (await r.json())["validationErrors"][0]["field"] == "title"
    async with http.patch(url, data=json.dumps(patch), headers={"Content-Type": "application/json"}) as r:
        assert r.status == 415
    async with http.patch(
        f"{url}x", data="{}", headers={"Content-Type": "application/merge-patch+json"}
    ) as r:
        assert r.status == 404


async def test_delete(directory: str, http: aiohttp.ClientSession, make_td: Any) -> None:
    # [tdd-things-delete] [tdd-things-delete-resp]
    td = make_td()
    await put(http, directory, td)
    async with http.delete(f"{directory}/things/{td['id']}") as r:
        assert r.status == 204
    async with http.get(f"{directory}/things/{td['id']}") as r:
        assert r.status == 404
        problem = await r.json(content_type="application/problem+json")
        assert problem["status"] == 404 and problem["title"] == "Not Found"
    async with http.delete(f"{directory}/things/{td['id']}") as r:
        assert r.status == 404


async def test_ttl_sets_expires_and_purge_removes(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    # [tdd-registrationinfo-expiry-purge]: ttl -> expires; client expires ignored when ttl is given

    td = make_td(registration={"ttl": 1, "expires": "2999-01-01T00:00:00Z"})
    assert (await put(http, directory, td)).status == 201
    async with http.get(f"{directory}/things/{td['id']}") as r:
        reg = (await r.json())["registration"]
    assert reg["ttl"] == 1 and not reg["expires"].startswith("2999")

    async def purged() -> bool:
        async with http.get(f"{directory}/things/{td['id']}") as r:
            return r.status == 404

    await eventually(purged, within=10)  # the purge runs every 0.2 s: the TD goes soon after its 1 s
    async with http.get(f"{directory}/things") as r:
        assert await r.json() == []


async def test_ttl_above_maximum_is_refused(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    td = make_td(registration={"ttl": 10**9})
    assert (await put(http, directory, td)).status == 400


async def test_listing_pagination(directory: str, http: aiohttp.ClientSession, make_td: Any) -> None:
    # [tdd-things-list-method] [tdd-things-list-resp] [tdd-things-list-resp-content-type]
    # [tdd-things-list-pagination] [tdd-things-list-pagination-limit] [tdd-things-list-only]
    # [tdd-things-list-pagination-header-nextlink] [tdd-things-list-pagination-header-nextlink-attr]
    # [tdd-things-list-pagination-header-nextlink-base]
    # [tdd-things-list-pagination-header-canonicallink] [tdd-things-list-pagination-order-default]
    ids = [f"urn:example:thing:{c}" for c in "dbeac"] + ["urn:example:thing:Z", "urn:example:thing:~"]
    for thing_id in ids:
        await put(http, directory, make_td(id=thing_id))
    seen: list[str] = []
    url: str | None = f"{directory}/things?limit=3"
    etags = set()
    while url:
        async with http.get(url) as r:
            assert r.status == 200 and r.content_type == "application/ld+json"
            page = await r.json()
            assert len(page) <= 3
            seen += [td["id"] for td in page]
            links = {link.get("rel"): link for link in _links(r.headers.getall("Link"))}
        assert "canonical" in links and links["canonical"]["url"] == "/things"
        etags.add(links["canonical"]["etag"])
        nxt = links.get("next")
        if nxt:
            assert "limit=3" in nxt["url"] and "offset=" in nxt["url"]
        url = f"{directory}{nxt['url']}" if nxt else None
    assert seen == sorted(ids)  # code point order: "Z" < "a", "~" last
    assert len(etags) == 1
    # [tdd-things-list-pagination-collection]
    async with http.get(f"{directory}/things?limit=2&format=collection") as r:
        body = await r.json()
    assert body["@type"] == "ThingCollection" and body["total"] == len(ids) and len(body["members"]) == 2
    assert "offset=2" in body["next"] and "format=collection" in body["next"]
    async with http.get(f"{directory}/things?limit=0") as r:
        assert r.status == 400
    async with http.get(f"{directory}/things?format=xml") as r:
        assert r.status == 400


def _links(values: list[str]) -> list[dict[str, str]]:
    out = []
    for value in values:
        for link in value.split(", <"):
            target, *params = link.split(";")
            entry = {"url": target.strip().strip("<>")}
            for param in params:
                key, _, val = param.strip().partition("=")
                entry[key] = val.strip('"')
            out.append(entry)
    return out


async def test_head_on_every_get_endpoint(directory: str, http: aiohttp.ClientSession, make_td: Any) -> None:
    # [tdd-http-head]
    td = make_td()
    await put(http, directory, td)
    paths = ["/", "/.well-known/wot", "/things", f"/things/{td['id']}", "/events", "/search/jsonpath?query=$"]
    paths += ["/search/sparql?query=ASK{}", "/search/filter", "/openapi.json"]
    for path in paths:
        async with http.head(f"{directory}{path}") as r:
            assert r.status == 200, path
            assert await r.read() == b""


async def test_unsupported_method_and_endpoint(directory: str, http: aiohttp.ClientSession) -> None:
    # [tdd-http-unsupported-feature]
    async with http.patch(f"{directory}/things", data="{}") as r:
        assert r.status == 405
        assert (await r.json(content_type="application/problem+json"))["title"] == "Method Not Allowed"
    async with http.get(f"{directory}/search/xpath?query=/") as r:
        assert r.status == 404
        assert r.content_type == "application/problem+json"


async def test_limits(directory: str, http: aiohttp.ClientSession, make_td: Any) -> None:
    big = make_td(description="x" * (5 * 1024 * 1024))
    body = io.BytesIO(json.dumps(big).encode())
    async with http.put(f"{directory}/things/{big['id']}", data=body, headers={"Content-Type": TD}) as r:
        assert r.status == 413
        assert r.content_type == "application/problem+json"
    long_id = "urn:x:" + "a" * 2000
    assert (await put(http, directory, make_td(id=long_id))).status == 400
    async with http.put(f"{directory}/things/not an iri", data="{}", headers={"Content-Type": TD}) as r:
        assert r.status == 400
    async with http.put(f"{directory}/things/urn:x:1", data="{", headers={"Content-Type": TD}) as r:
        assert r.status == 400
    async with http.put(
        f"{directory}/things/urn:x:1", data="{}", headers={"Content-Type": "text/plain"}
    ) as r:
        assert r.status == 415
    td = make_td()
    async with http.put(
        f"{directory}/things/urn:other", data=json.dumps(td), headers={"Content-Type": TD}
    ) as r:
        assert r.status == 400
