"""What a storage backend of the directory implements: three small protocols and their records.

A backend keeps three things, and each consumer is typed against only the one it needs:

- :class:`DocumentStore`: the stored descriptions (reads from memory, durable writes) and the
  change feed, one :class:`Change` per committed write, published in commit order. The
  :class:`~registry.Directory` service writes through it; the field index, the RDF index and the
  event hub follow its feed.
- :class:`ChangeJournal`: the recent history of that feed, for ``Last-Event-ID`` replay
  (WoT Discovery 7.3.2.2). Its event ids are opaque strings the journal issues and parses, so a
  backend whose versions are opaque (a Kubernetes ``resourceVersion``) can use its own.
- :class:`IndexBacklog`: the SPARQL index's to-do list, the descriptions whose RDF may be missing
  from or stale in the index. It is exactly as durable as the index it belongs to
  (:attr:`IndexBacklog.rdf_path`): a durable index with a volatile backlog, or the reverse, would
  leave descriptions out of SPARQL answers after a restart.

:class:`Store` is all three plus the lifecycle (an async context manager, ``aclose``):
:class:`~registry.SQLiteStore` (one SQLite file) and :class:`~registry.MemoryStore` (a process's
memory only) implement it.

Sequence numbers and event ids. ``Change.seq`` orders the feed inside one process: strictly
increasing in publish order, and a journaled change replays with the ``seq`` it was published
with (or one below every change published since the store opened). The RDF index and the event
hub compare ``seq`` values; clients never see them. ``Change.event_id`` is what clients see (the
SSE ``id`` and their ``Last-Event-ID``); only the journal that issued it interprets it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, Self

from ._json import loads

__all__ = [
    "Change",
    "ChangeFeed",
    "ChangeJournal",
    "ChangeKind",
    "DocumentStore",
    "IndexBacklog",
    "JournalEntry",
    "Record",
    "Store",
    "decimal_event_id",
]

ChangeKind = Literal["thing_created", "thing_updated", "thing_deleted"]


@dataclass(frozen=True, slots=True)
class Record:
    """One stored description: its JSON text (the enriched TD) and absolute expiry (epoch s).

    The text ends with ``registration`` as its last member (see ``_enrich.retrieved_tail``).
    """

    id: str
    data: bytes
    expires: float | None

    def document(self) -> dict[str, Any]:
        return loads(self.data)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One change as the journal keeps it: what an SSE event of it carries."""

    seq: int
    event_id: str
    kind: ChangeKind
    id: str
    diff: dict[str, Any]  # the event's ``diff=true`` data: full TD, merge patch, or just the id


@dataclass(frozen=True, slots=True)
class Change:
    """One committed write, published in commit order to the feed's subscribers."""

    seq: int
    event_id: str
    kind: ChangeKind
    id: str
    record: Record | None  # the description after the change; None when deleted
    diff: dict[str, Any]  # as in JournalEntry

    def entry(self) -> JournalEntry:
        return JournalEntry(self.seq, self.event_id, self.kind, self.id, self.diff)


class ChangeFeed(Protocol):
    def subscribe(self, callback: Callable[[Change], None]) -> None:
        """Call ``callback`` with every change, synchronously on the event loop, after its commit."""
        ...


class DocumentStore(ChangeFeed, Protocol):
    """The descriptions: reads answer from memory, writes return once durable (then published)."""

    @property
    def revision(self) -> int:
        """Changes on every create or delete (the listing's etag)."""
        ...

    def get(self, thing_id: str) -> Record | None: ...

    def ids(self) -> Sequence[str]:
        """Every id in Unicode code point order (the listing order of the spec)."""
        ...

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Record]: ...

    async def put(self, record: Record, diff: dict[str, Any], *, created: bool) -> Change:
        """Store ``record`` (create or replace); return the published change."""
        ...

    async def delete(self, thing_id: str) -> Change | None:
        """Remove a description; None when there was none."""
        ...

    async def expired(self, now: float) -> list[str]:
        """Ids whose registration expires at or before ``now``."""
        ...


class ChangeJournal(Protocol):
    """The feed's recent history, for ``Last-Event-ID`` replay; the oldest entries may be dropped."""

    def valid_event_id(self, event_id: str) -> bool:
        """Whether ``event_id`` has the form of this journal's ids (anything else is a 400)."""
        ...

    async def changes_since(self, event_id: str, limit: int) -> list[JournalEntry]:
        """Up to ``limit`` entries after the one with ``event_id``, oldest first.

        An id this history never issued (a memory store before a restart, another directory)
        means the client has missed everything: the entries from the oldest one kept.
        """
        ...


class IndexBacklog(Protocol):
    """The SPARQL index's to-do list: ``(id, seq)`` of descriptions whose RDF may be stale."""

    @property
    def rdf_path(self) -> Path | None:
        """Where the SPARQL index keeps its store, as durable as this backlog; None: in memory."""
        ...

    async def rdf_pending(self) -> list[tuple[str, int]]:
        """Every description written since its RDF was last indexed, with its latest change's seq.

        At open, every description the index at :attr:`rdf_path` may lack (all of them when the
        index is in memory and the descriptions are not).
        """
        ...

    async def rdf_done(self, done: Iterable[tuple[str, int]]) -> None:
        """Forget ``(id, seq)`` pairs whose RDF is indexed, unless a later write made them stale."""
        ...


class Store(DocumentStore, ChangeJournal, IndexBacklog, Protocol):
    """A whole backend, opened and closed by the :class:`~registry.Directory` that uses it."""

    async def __aenter__(self) -> Self:
        """Open: load the descriptions, so reads can answer from memory."""
        ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def aclose(self) -> None:
        """Finish pending writes and release everything; idempotent."""
        ...


def decimal_event_id(event_id: str) -> int | None:
    """The seq an event id names, for journals whose ids are their decimal seqs (else None)."""
    return int(event_id) if event_id.isascii() and event_id.isdigit() else None
