"""What the directory answers is valid TD 1.1 and carries no null members the schema does not allow.

Issue 15: a client such as node-wot validates what it gets; a ``null`` where the TD schema wants a
string (or an object) makes it refuse the description. Descriptions go in without nulls (an
SDK-made agent and the example Agent Description), and every reply that carries descriptions —
one TD, the listing as an array and as a ThingCollection, the filter and JSONPath searches, the
creation events with ``diff=true`` — is validated against the TD schema and searched for nulls.
The only nulls the directory sends are those of RFC 7396 merge patches (an update event's diff,
where null means "removed"), which are not descriptions.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import aiohttp
import pytest

from wot_agents import Agent, DirectoryClient, validate

pytestmark = pytest.mark.usefixtures("store_kind")


def _nulls(value: Any, pointer: str = "") -> list[str]:
    if value is None:
        return [pointer or "/"]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _nulls(item, f"{pointer}/{key}")]
    if isinstance(value, list):
        return [p for index, item in enumerate(value) for p in _nulls(item, f"{pointer}/{index}")]
    return []


async def _sdk_agent() -> dict[str, Any]:
    """The TD an SDK agent serves (with its HTTP forms)."""
    agent = Agent("Replies Agent", id="urn:test:replies", description="Answers in valid TDs.")

    @agent.action(description="Adds two numbers.")
    async def add(a: int, b: int = 1) -> int:
        return a + b

    agent.property("station", str, default="Berlin", writable=False)
    async with agent.serve(http=True) as running:
        return running.description.to_dict()


def _check(where: str, reply: Any, count: int) -> None:
    tds = reply
    if isinstance(reply, dict) and reply.get("@type") == "ThingCollection":
        assert _nulls({k: v for k, v in reply.items() if k != "members"}) == [], where
        tds = reply["members"]
    assert len(tds) == count, where
    for td in tds:
        assert _nulls(td) == [], f"{where}: {td.get('id')}"
        assert validate(td) == [], f"{where}: {td.get('id')}"


async def test_descriptions_in_replies_are_valid_and_without_nulls(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    given = [await _sdk_agent(), make_td()]
    for td in given:
        assert _nulls(td) == [] and validate(td) == []
    created: list[Any] = []
    async with DirectoryClient(directory) as client:
        following = asyncio.Event()

        async def follow() -> None:
            async for event in client.events("thing_created", diff=True, connected=following):
                created.append(event.data)
                if len(created) == len(given):
                    return

        task = asyncio.create_task(follow())
        await asyncio.wait_for(following.wait(), 5)
        for td in given:
            await client.register(td)
        await asyncio.wait_for(task, 5)
    _check("thing_created events (diff=true)", created, 2)

    async def fetch(path: str, method: str = "GET", body: Any = None) -> Any:
        async with http.request(method, f"{directory}{path}", json=body) as r:
            assert r.status == 200, (path, await r.text())
            return await r.json(content_type=None)

    for td in given:
        _check(f"GET /things/{td['id']}", [await fetch(f"/things/{urllib.parse.quote(td['id'])}")], 1)
    _check("GET /things", await fetch("/things"), 2)
    _check("GET /things?format=collection", await fetch("/things?format=collection"), 2)
    _check("GET /search/filter", await fetch("/search/filter?type=lmos:Agent"), 2)
    by_type = {"filter": {"type": "lmos:Agent"}}
    _check("POST /search/filter", await fetch("/search/filter", "POST", by_type), 2)
    _check("GET /search/jsonpath", await fetch("/search/jsonpath?query=" + urllib.parse.quote("$[*]")), 2)
    own = await fetch("/")
    assert _nulls(own) == [] and validate(own) == []
