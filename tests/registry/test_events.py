"""The Events API (7.3.2.2): SSE content type, event types, filtering by type, bad arguments."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from wot_agents import DirectoryClient

pytestmark = pytest.mark.usefixtures("store_kind")


async def test_filter_by_type(directory: str, make_td: Any) -> None:
    # [tdd-notification] [tdd-notification-sse] [tdd-notification-event-types] [tdd-notification-filter-type]
    # [tdd-notification-data] [tdd-notification-data-td-id] [tdd-notification-data-delete-diff]
    # [tdd-notification-event-id]
    async with DirectoryClient(directory) as client:
        deleted: list[Any] = []

        async def follow() -> None:
            async for event in client.events("thing_deleted", diff=True, connected=following):
                deleted.append(event)
                return

        following = asyncio.Event()
        task = asyncio.create_task(follow())
        await asyncio.wait_for(following.wait(), 5)  # the directory notifies us from now on
        td = make_td()
        await client.register(td)
        await client.patch(td["id"], {"title": "x"})
        await client.delete(td["id"])
        await asyncio.wait_for(task, 5)
    assert [(e.type, e.data) for e in deleted] == [("thing_deleted", {"id": td["id"]})]
    assert deleted[0].id is not None and deleted[0].id.isdigit()


async def test_stream_headers_and_bad_arguments(directory: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{directory}/events/thing_created") as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
    async with http.get(f"{directory}/events/thing_exploded") as r:
        assert r.status == 404 and r.content_type == "application/problem+json"
    async with http.get(f"{directory}/events?diff=maybe") as r:
        assert r.status == 400
    async with http.get(f"{directory}/events", headers={"Last-Event-ID": "event_1"}) as r:
        assert r.status == 400


async def test_an_unknown_last_event_id_replays_the_whole_journal(
    directory: str, make_td: Any, store_kind: str
) -> None:
    # [tdd-notification-event-id]: a client resuming with an id from another history (a memory
    # store before a restart) has missed everything this directory journaled since.
    async with DirectoryClient(directory) as client:
        first = await client.register(make_td(id="urn:x:1"))
        await client.register(make_td(id="urn:x:2"))
        events = client.events(last_event_id="1000", reconnect=False)
        replayed = [await asyncio.wait_for(anext(events), 5) for _ in range(2)]
        await events.aclose()
    assert [(e.type, e.data["id"]) for e in replayed] == [
        ("thing_created", first),
        ("thing_created", "urn:x:2"),
    ]
    # The ids are the journal's own: 1, 2 for an embedded store; resourceVersions in Kubernetes.
    ids = [e.id for e in replayed]
    assert ids == ["1", "2"] if store_kind != "kubernetes" else int(ids[0] or 0) < int(ids[1] or 0)
