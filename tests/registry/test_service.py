"""The directory as a service, without HTTP, over either store; and what the protocols promise.

A backend with opaque event ids (as a Kubernetes ``resourceVersion`` is) serves SSE and its
``Last-Event-ID`` replay through the same event hub.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from registry import (
    Change,
    Directory,
    DirectorySettings,
    JournalEntry,
    MemoryStore,
    Record,
    SQLiteStore,
    Store,
)
from registry._problems import HTTPProblem
from wot_agents import DirectoryClient, DirectoryError

from .conftest import running_directory


def _new_store(kind: str, tmp_path: Path, journal_size: int = 100) -> Store:
    if kind == "memory":
        return MemoryStore(journal_size=journal_size)
    return SQLiteStore(tmp_path / "d.db", journal_size=journal_size)


@pytest.fixture
async def service(store_kind: str, tmp_path: Path) -> AsyncIterator[Directory]:
    async with Directory(DirectorySettings(purge_interval=3600), store=_new_store(store_kind, tmp_path)) as d:
        yield d


async def test_writes_go_through_the_service(service: Directory, make_td: Any) -> None:
    seen: list[Change] = []
    service.store.subscribe(seen.append)
    created = await service.put("urn:example:a", make_td(id="urn:example:a", title="A"))
    assert created.kind == "thing_created" and created.diff["title"] == "A"
    record = service.get("urn:example:a")
    assert record is not None and set(record.document()["registration"]) == {"created", "modified"}
    updated = await service.patch("urn:example:a", {"title": "B"})
    assert updated.kind == "thing_updated"
    # the merge patch (registration.modified too, unless within the same millisecond)
    assert {k: v for k, v in updated.diff.items() if k != "registration"} == {
        "id": "urn:example:a",
        "title": "B",
    }
    anonymous = await service.create(make_td(id=None))
    assert anonymous.id.startswith("urn:uuid:") and service.get(anonymous.id) is not None
    assert list(service.ids()) == sorted(["urn:example:a", anonymous.id])
    assert service.search({"title": "b"}) == ["urn:example:a"]
    assert await service.search_jsonpath("$[?@.title=='B'].id") == ["urn:example:a"]
    body, _ = await service.search_sparql("ASK { GRAPH <urn:example:a> { ?s ?p ?o } }")
    assert json.loads(body)["boolean"] is True
    deleted = await service.delete("urn:example:a")
    assert deleted is not None and deleted.kind == "thing_deleted"
    assert await service.delete("urn:example:a") is None
    assert [c.kind for c in seen] == ["thing_created", "thing_updated", "thing_created", "thing_deleted"]
    assert [c.seq for c in seen] == sorted({c.seq for c in seen})


async def test_the_service_refuses_what_the_api_refuses(service: Directory, make_td: Any) -> None:
    cases: list[tuple[Callable[[], Any], int]] = [
        (lambda: service.put("not an iri", make_td(id="not an iri")), 400),
        (lambda: service.put("urn:x:1", make_td(id="urn:x:2")), 400),
        (lambda: service.put("urn:x:1", make_td(id="urn:x:1", title=None)), 400),  # invalid TD
        (lambda: service.put("urn:x:1", make_td(id="urn:x:1", registration={"ttl": -1})), 400),
        (lambda: service.create(make_td()), 400),  # has an id
        (lambda: service.patch("urn:x:1", {"title": "x"}), 404),
    ]
    for call, status in cases:
        with pytest.raises(HTTPProblem) as caught:
            await call()
        assert caught.value.status == status
    with pytest.raises(HTTPProblem, match="cannot sort by"):
        service.search(None, ["colour"])
    assert len(service.store) == 0


async def test_concurrent_writes_to_one_id_lose_nothing(service: Directory, make_td: Any) -> None:
    await service.put("urn:x:1", make_td(id="urn:x:1"))
    # Each patch reads the stored TD and writes it back with one more member: interleaved
    # without the per-id lock, later writes would overwrite members of earlier ones.
    await asyncio.gather(*(service.patch("urn:x:1", {f"lmos:patch{i}": i}) for i in range(20)))
    record = service.get("urn:x:1")
    assert record is not None
    assert {k: v for k, v in record.document().items() if k.startswith("lmos:patch")} == {
        f"lmos:patch{i}": i for i in range(20)
    }
    assert not service._locks  # nothing is kept per id once its writes are done


async def test_purge_deletes_expired_but_not_renewed(service: Directory, make_td: Any) -> None:
    await service.put("urn:x:old", make_td(id="urn:x:old", registration={"ttl": 60}))
    await service.put("urn:x:new", make_td(id="urn:x:new", registration={"ttl": 600}))
    record = service.store.get("urn:x:old")
    assert record is not None and record.expires is not None
    later = record.expires + 1
    assert service.get("urn:x:old", now=later) is None  # gone for readers before the purge
    assert await service.purge(now=later) == 1
    assert service.store.get("urn:x:old") is None and service.get("urn:x:new") is not None


async def test_journal_replays_from_the_oldest_kept(store_kind: str, tmp_path: Path) -> None:
    async with _new_store(store_kind, tmp_path, journal_size=3) as store:
        for i in range(1, 5):
            await store.put(
                Record(f"urn:x:{i}", b'{"registration":{}}', None), {"id": f"urn:x:{i}"}, created=True
            )
        last = await store.changes_since("0", 100)
        assert [e.id for e in last][-3:] == ["urn:x:2", "urn:x:3", "urn:x:4"]
        assert [e.id for e in await store.changes_since(last[-2].event_id, 100)] == ["urn:x:4"]
        assert await store.changes_since(last[-1].event_id, 100) == []
        never = await store.changes_since("99", 100)  # not from this history: everything kept
        assert [e.id for e in never] == [e.id for e in last]
        assert store.valid_event_id(last[0].event_id) and not store.valid_event_id("event_1")


async def test_backlog_forgets_only_what_no_later_write_made_stale(store_kind: str, tmp_path: Path) -> None:
    async with _new_store(store_kind, tmp_path) as store:
        first = await store.put(Record("urn:x:1", b'{"registration":{}}', None), {}, created=True)
        second = await store.put(Record("urn:x:1", b'{"registration":{}}', None), {}, created=False)
        await store.rdf_done([("urn:x:1", first.seq)])
        assert await store.rdf_pending() == [("urn:x:1", second.seq)]
        await store.rdf_done([("urn:x:1", second.seq)])
        assert await store.rdf_pending() == []


# -- a backend with opaque event ids -----------------------------------------------------------
class OpaqueIds(MemoryStore):
    """A MemoryStore whose event ids are opaque strings, as a Kubernetes store's would be."""

    _ID = re.compile(r"^rv-([0-9a-f]+)$")

    @staticmethod
    def _opaque(seq: int) -> str:
        return f"rv-{seq * 7919:x}"

    def subscribe(self, callback: Callable[[Change], None]) -> None:
        super().subscribe(
            lambda change: callback(dataclasses.replace(change, event_id=self._opaque(change.seq)))
        )

    def valid_event_id(self, event_id: str) -> bool:
        return self._ID.match(event_id) is not None

    async def changes_since(self, event_id: str, limit: int) -> list[JournalEntry]:
        match = self._ID.match(event_id)
        assert match is not None
        entries = await super().changes_since(str(int(match.group(1), 16) // 7919), limit)
        return [dataclasses.replace(e, event_id=self._opaque(e.seq)) for e in entries]


async def test_sse_ids_are_the_journals_own(make_td: Any) -> None:
    async with running_directory(OpaqueIds()) as url, DirectoryClient(url) as client:
        for i in range(3):
            await client.register(make_td(id=f"urn:x:{i}"))
        everything = client.events(last_event_id="rv-0", reconnect=False)
        seen = [await asyncio.wait_for(anext(everything), 5) for _ in range(3)]
        await everything.aclose()
        assert [e.id for e in seen] == [OpaqueIds._opaque(s) for s in (1, 2, 3)]
        rest = client.events(last_event_id=seen[0].id, reconnect=False)
        replayed = [await asyncio.wait_for(anext(rest), 5) for _ in range(2)]
        await rest.aclose()
        assert [(e.id, e.data["id"]) for e in replayed] == [(e.id, e.data["id"]) for e in seen[1:]]
        with pytest.raises(DirectoryError) as caught:
            async for _ in client.events(last_event_id="7", reconnect=False):
                pass
        assert caught.value.status == 400


async def test_the_injected_store_is_the_one_written(make_td: Any) -> None:
    store = MemoryStore()
    async with running_directory(store) as url, DirectoryClient(url) as client:
        thing_id = await client.register(make_td(id="urn:x:1"))
        record = store.get(thing_id)
        assert record is not None and record.document()["title"] == make_td()["title"]
