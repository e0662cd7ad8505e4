"""A backend in the process's memory only, written against ``_backend.py`` and nothing else.

It is what a second backend needs and no more: descriptions in a dict (ids kept sorted), a
bounded journal, and the RDF backlog as a dict. Nothing survives the process, so the SPARQL index
that goes with it lives in memory too (``rdf_path`` is None). Useful to embed a directory
without a database, and to check that the directory depends on the protocols only: the directory
API tests run against it as well as against :class:`~registry.SQLiteStore`.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from ._backend import Change, ChangeKind, JournalEntry, Record, Store, decimal_event_id

__all__ = ["DocumentMirror", "MemoryRdfBacklog", "MemoryStore"]


class DocumentMirror:
    """The read side of a document store, in memory: records by id, ids kept sorted, the
    listing's revision and the feed's subscribers.

    Every store here builds on it. The embedded stores call :meth:`_apply` with each change once
    it is committed (SQLite: synced; here: at once), which updates the mirror, then publishes; the
    Kubernetes store fills it from its watch.
    """

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._sorted: list[str] = []
        self._subscribers: list[Callable[[Change], None]] = []
        self.revision = 0  # bumps on every create or delete: the listing's etag

    def _load(self, records: Iterable[Record], revision: int) -> None:
        self._records = {record.id: record for record in records}
        self._sorted = sorted(self._records)
        self.revision = revision

    def get(self, thing_id: str) -> Record | None:
        return self._records.get(thing_id)

    def ids(self) -> Sequence[str]:
        """Every id in Unicode code point order (the listing order of the spec)."""
        return self._sorted

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self._records.values())

    def subscribe(self, callback: Callable[[Change], None]) -> None:
        """Call ``callback`` with every change, synchronously, right after its commit."""
        self._subscribers.append(callback)

    async def expired(self, now: float) -> list[str]:
        """Ids whose registration expires at or before ``now``."""
        return [r.id for r in self._records.values() if r.expires is not None and r.expires <= now]

    def _apply(self, change: Change) -> None:
        if change.record is not None:
            if change.id not in self._records:
                bisect.insort(self._sorted, change.id)
                self.revision += 1
            self._records[change.id] = change.record
        elif self._records.pop(change.id, None) is not None:
            del self._sorted[bisect.bisect_left(self._sorted, change.id)]
            self.revision += 1
        for callback in self._subscribers:
            callback(change)


class MemoryRdfBacklog:
    """The RDF backlog (descriptions changed and not indexed yet: id -> the change's seq) in a dict.

    For stores whose SPARQL index lives in memory (``rdf_path`` is None): a restart rebuilds the
    index from every description, so the backlog need not survive one either. The store records
    ``self._pending[id] = seq`` for each change it makes.
    """

    _pending: dict[str, int]

    @property
    def rdf_path(self) -> Path | None:
        return None

    async def rdf_pending(self) -> list[tuple[str, int]]:
        return list(self._pending.items())

    async def rdf_done(self, done: Iterable[tuple[str, int]]) -> None:
        for thing_id, seq in done:
            if self._pending.get(thing_id, seq + 1) <= seq:  # a newer change waits to be indexed
                del self._pending[thing_id]


class MemoryStore(DocumentMirror, MemoryRdfBacklog):
    """Descriptions, journal (``journal_size`` newest changes) and RDF backlog in memory."""

    def __init__(self, *, journal_size: int = 100_000) -> None:
        if journal_size < 1:
            raise ValueError(f"journal_size must be at least 1, not {journal_size}")
        super().__init__()
        self._journal: deque[JournalEntry] = deque(maxlen=journal_size)
        self._pending: dict[str, int] = {}
        self._seq = 0

    # -- lifecycle: nothing to open or release -----------------------------------------------
    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Nothing to release; the descriptions stay readable."""

    # -- writes ------------------------------------------------------------------------------
    async def put(self, record: Record, diff: dict[str, Any], *, created: bool) -> Change:
        return self._commit("thing_created" if created else "thing_updated", record.id, record, diff)

    async def delete(self, thing_id: str) -> Change | None:
        if thing_id not in self._records:
            return None
        return self._commit("thing_deleted", thing_id, None, {"id": thing_id})

    def _commit(self, kind: ChangeKind, thing_id: str, record: Record | None, diff: dict[str, Any]) -> Change:
        self._seq += 1
        change = Change(self._seq, str(self._seq), kind, thing_id, record, diff)
        self._journal.append(change.entry())
        self._pending[thing_id] = change.seq
        self._apply(change)
        return change

    # -- journal -----------------------------------------------------------------------------
    def valid_event_id(self, event_id: str) -> bool:
        return decimal_event_id(event_id) is not None

    async def changes_since(self, event_id: str, limit: int) -> list[JournalEntry]:
        after = decimal_event_id(event_id)
        if after is None or after > self._seq:
            after = 0  # not from this history (e.g. before a restart)
        if not self._journal:
            return []
        # Every change is journaled, so the kept entries have consecutive seqs.
        start = max(0, after - self._journal[0].seq + 1)
        return list(itertools.islice(self._journal, start, start + limit))


if TYPE_CHECKING:  # mypy checks here that the class implements every protocol of a Store
    _IS_A_STORE: type[Store] = MemoryStore
