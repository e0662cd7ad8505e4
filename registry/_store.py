"""The embedded backend: descriptions, change journal and RDF backlog in one SQLite file.

It implements every protocol of ``_backend.py``. One SQLite database (WAL, ``synchronous=FULL``)
holds the descriptions, the event journal (for ``Last-Event-ID`` replay) and the list of
descriptions whose RDF is not indexed yet. A write is
acknowledged only after its transaction is committed and synced, so a crash (even ``kill -9``)
loses no acknowledged write and SQLite's journal keeps the file consistent.

All SQLite work runs on one dedicated thread, never on the event loop. The serialized
descriptions are also kept in memory (ids in sorted order), so reads, listings and searches never
wait for the disk. Every write, whatever its origin (HTTP API, TTL purge, an ingest bridge), goes
through :meth:`SQLiteStore.put` / :meth:`SQLiteStore.delete`, which publish one :class:`Change` to
the subscribers in commit order: indexes and events cannot disagree with the store. The journal,
the RDF backlog mark and the description are written in one transaction; ``seq`` is durable, so
its decimal form is the event id.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ._backend import Change, ChangeKind, JournalEntry, Record, decimal_event_id
from ._json import dumps, loads
from ._memory import DocumentMirror

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS things (id TEXT PRIMARY KEY, data BLOB NOT NULL, expires REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, id TEXT NOT NULL,
                                   diff TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rdf_pending (id TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""


class SQLiteStore(DocumentMirror):
    """The embedded store: one SQLite file (``path``), or memory only when ``path`` is None.

    ``journal_size`` bounds the event journal kept for replay (oldest events dropped first). With
    a file, the SPARQL index lives next to it (``<path>.rdf``), as durable as its backlog here.
    """

    def __init__(self, path: str | Path | None, *, journal_size: int = 100_000) -> None:
        self.path = Path(path) if path is not None else None
        self.journal_size = journal_size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wot-directory-sqlite")
        self._db: sqlite3.Connection | None = None
        super().__init__()
        self._queue: list[tuple[Change, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._seq = 0
        self._writes = 0

    @property
    def last_seq(self) -> int:
        """The sequence number (event id) of the newest change; 0 before the first."""
        return self._seq

    @property
    def rdf_path(self) -> Path | None:
        return Path(f"{self.path}.rdf") if self.path is not None else None

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Open (creating if needed) the database and load every description into memory."""
        rows, self._seq, revision = await self._run(self._open_sync)
        self._load((Record(*row) for row in rows), revision)

    def _open_sync(self) -> tuple[list[tuple[str, bytes, float | None]], int, int]:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path or ":memory:", isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before it is acknowledged
        db.executescript(_SCHEMA)
        self._db = db
        rows = db.execute("SELECT id, data, expires FROM things").fetchall()
        seq = db.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
        stored = db.execute("SELECT value FROM meta WHERE key = 'seq'").fetchone()
        return [(r[0], bytes(r[1]), r[2]) for r in rows], max(seq, int(stored[0]) if stored else 0), seq

    async def aclose(self) -> None:
        """Finish pending writes and close the database; idempotent."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._db is not None:
            await self._run(self._close_sync)
        self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        assert self._db is not None
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (str(self._seq),))
        self._db.close()
        self._db = None

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- writes ------------------------------------------------------------------------------
    async def put(self, record: Record, diff: dict[str, Any], *, created: bool) -> Change:
        """Store ``record`` (create or replace) and publish the change once it is durable."""
        kind: ChangeKind = "thing_created" if created else "thing_updated"
        return await self._write(lambda seq: Change(seq, str(seq), kind, record.id, record, diff))

    async def delete(self, thing_id: str) -> Change | None:
        """Remove a description; None when there was none."""
        if thing_id not in self._records:
            return None
        return await self._write(
            lambda seq: Change(seq, str(seq), "thing_deleted", thing_id, None, {"id": thing_id})
        )

    async def _write(self, make: Callable[[int], Change]) -> Change:
        # Group commit: writes that arrive while a commit is syncing share the next one, so
        # concurrent writers pay one fsync per batch, not one each. Order is kept throughout.
        self._seq += 1
        change = make(self._seq)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((change, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        await done
        return change

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self._run(self._commit_sync, [change for change, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    done.set_exception(exc)
                continue
            for change, done in batch:
                self._apply(change)
                done.set_result(None)

    def _commit_sync(self, changes: list[Change]) -> None:
        with self._transaction() as db:
            for change in changes:
                record = change.record
                if record is not None:
                    row = (record.id, record.data, record.expires)
                    db.execute("INSERT OR REPLACE INTO things VALUES (?, ?, ?)", row)
                else:
                    db.execute("DELETE FROM things WHERE id = ?", (change.id,))
                db.execute("INSERT OR REPLACE INTO rdf_pending VALUES (?, ?)", (change.id, change.seq))
                self._journal(db, change)

    def _journal(self, db: sqlite3.Connection, change: Change) -> None:
        db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
            (change.seq, change.kind, change.id, dumps(change.diff), time.time()),
        )
        self._writes += 1
        if self._writes % 1000 == 0:
            db.execute("DELETE FROM events WHERE seq <= ?", (change.seq - self.journal_size,))

    def _transaction(self) -> _Transaction:
        assert self._db is not None
        return _Transaction(self._db)

    # -- journal and RDF bookkeeping ---------------------------------------------------------
    def valid_event_id(self, event_id: str) -> bool:
        return decimal_event_id(event_id) is not None

    async def changes_since(self, event_id: str, limit: int) -> list[JournalEntry]:
        """Journal entries after ``event_id``, oldest first (all kept ones for an id never issued)."""
        after = decimal_event_id(event_id)
        if after is None or after > self._seq:
            after = 0  # not from this history (a memory store before a restart)
        rows = await self._run(
            lambda: self._db.execute(  # type: ignore[union-attr]
                "SELECT seq, kind, id, diff FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            ).fetchall()
        )
        return [JournalEntry(seq, str(seq), kind, id_, loads(diff)) for seq, kind, id_, diff in rows]

    async def rdf_pending(self) -> list[tuple[str, int]]:
        """``(id, seq)`` of descriptions whose RDF may be missing from, or stale in, the RDF index."""
        rows = await self._run(lambda: self._db.execute("SELECT id, seq FROM rdf_pending").fetchall())  # type: ignore[union-attr]
        return [(row[0], row[1]) for row in rows]

    async def rdf_done(self, done: Iterable[tuple[str, int]]) -> None:
        """Forget ``(id, seq)`` pairs whose RDF is indexed, unless a later write made them stale.

        Not synced: losing this in a crash only means indexing those descriptions again, and an
        fsync here would delay the writers' commits that share this thread.
        """
        batch = list(done)

        def forget() -> None:
            assert self._db is not None
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._transaction() as db:
                    db.executemany("DELETE FROM rdf_pending WHERE id = ? AND seq <= ?", batch)
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

        await self._run(forget)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
