"""The conversation store: each tenant's conversations, turn by turn, with the agent of each turn.

Behind :class:`ConversationStore` (a protocol a second backend, e.g. PostgreSQL, implements);
:class:`SQLiteConversationStore` is the embedded default. A turn is written before its answer
goes to the client, and SQLite commits it to its write-ahead log first, so a restart, or a
``kill -9`` of the runtime, loses no answered turn (a power cut may lose the last few: the log
is not synced on every commit). The store is bounded: turns per conversation (the oldest go),
conversations per tenant (the least recently active go) and age (conversations idle longer go),
enforced on every write to a conversation and by :meth:`ConversationStore.purge`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

__all__ = ["ConversationStore", "ConversationSummary", "SQLiteConversationStore", "StoredTurn"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredTurn:
    """One answered turn: the user's messages of the turn, the reply, who answered and why."""

    turn_id: str
    query: str
    reply: str
    agent_id: str
    agent_name: str
    method: str
    score: float
    subset: str
    channel: str
    at: float = field(default_factory=time.time)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def to_record(self) -> str:
        """The JSON body a store keeps for this turn (read back by :meth:`from_record`)."""
        return json.dumps(
            {
                "turnId": self.turn_id, "query": self.query, "reply": self.reply, "agentId": self.agent_id,
                "agentName": self.agent_name, "method": self.method, "score": self.score,
                "subset": self.subset, "channel": self.channel, "at": self.at, "messages": self.messages,
            },
            ensure_ascii=False,
        )  # fmt: skip

    @classmethod
    def from_record(cls, record: str) -> StoredTurn:
        """The turn a store kept as :meth:`to_record`'s JSON body."""
        body = json.loads(record)
        return cls(
            turn_id=body["turnId"],
            query=body["query"],
            reply=body["reply"],
            agent_id=body["agentId"],
            agent_name=body["agentName"],
            method=body["method"],
            score=body["score"],
            subset=body["subset"],
            channel=body["channel"],
            at=body["at"],
            messages=body.get("messages") or [],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "turnId": self.turn_id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
            "messages": self.messages,
            "query": self.query,
            "content": self.reply,
            "agent": {"id": self.agent_id, "name": self.agent_name},
            "routing": {"method": self.method, "score": round(self.score, 6), "subset": self.subset},
            "channelId": self.channel,
        }


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """One conversation in a listing: its id, its first question, how many turns, last activity."""

    id: str
    title: str
    turns: int
    updated: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "conversationId": self.id,
            "title": self.title,
            "turns": self.turns,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.updated)),
        }


class ConversationStore(Protocol):
    """Where conversations are kept; every method is safe to call concurrently."""

    async def append(self, tenant: str, conversation_id: str, turn: StoredTurn) -> None:
        """Add an answered turn; when this returns, the turn survives a crash of the process."""
        ...

    async def turns(self, tenant: str, conversation_id: str, *, last: int | None = None) -> list[StoredTurn]:
        """The conversation's turns, oldest first (only the ``last`` ones if given); [] if unknown."""
        ...

    async def conversations(self, tenant: str, *, limit: int = 50) -> list[ConversationSummary]:
        """The tenant's conversations, the most recently active first (at most ``limit``)."""
        ...

    async def purge(self) -> int:
        """Drop what the bounds no longer allow (age, conversations per tenant); how many went."""
        ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None: ...


#: Conversations deleted per transaction of a purge.
PURGE_CHUNK = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    tenant TEXT NOT NULL, id TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS conversations_by_age ON conversations (tenant, updated);
CREATE INDEX IF NOT EXISTS conversations_updated ON conversations (updated);
CREATE TABLE IF NOT EXISTS turns (
    tenant TEXT NOT NULL, conversation TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (tenant, conversation, seq)
);
"""


class SQLiteConversationStore:
    """The embedded store: one SQLite file (``path``; None keeps everything in memory).

    Turns are read and written on the event loop's thread: a commit to the write-ahead log with
    ``synchronous=NORMAL`` writes to the page cache and syncs nothing, ~0.15 ms, a read ~0.05 ms
    (measured on the loaded 2-core machine), less than handing each turn to a worker thread
    costs there (several ms a hand-off under load, bench/runtime.py). What does touch the disk,
    folding the log back into the database (a checkpoint, with its fsync), runs on a worker
    thread on a connection of its own every ``checkpoint_interval`` seconds, never in a commit.

    The newest ``recent_turns`` turns of the ``recent_conversations`` most recently used
    conversations are also kept in memory, written through on every append, so routing a turn
    (which reads the conversation's last turns) does not read and parse them from the database
    each time. The file therefore belongs to one runtime process at a time (replicas share
    PostgreSQL: ``_postgres.py``).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        max_turns: int = 100,
        max_conversations: int = 100_000,
        max_age: float = 30 * 24 * 3600,
        checkpoint_interval: float = 1.0,
        recent_turns: int = 8,
        recent_conversations: int = 1024,
    ) -> None:
        self.path = str(path) if path is not None else ":memory:"
        self.max_turns = max_turns
        self.max_conversations = max_conversations
        self.max_age = max_age
        self.checkpoint_interval = checkpoint_interval
        self._worker = ThreadPoolExecutor(1, "wot-runtime-store")
        self._db: sqlite3.Connection | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self._checkpointer: sqlite3.Connection | None = None
        self._counts: dict[str, int] = {}
        #: The newest turns (up to ``_window``) of recently used conversations, oldest first; a list
        #: shorter than the window is the whole conversation.
        self._recent: OrderedDict[tuple[str, str], list[StoredTurn]] = OrderedDict()
        self._window = max(0, min(recent_turns, max_turns))
        self._recent_conversations = recent_conversations

    # --- lifecycle ---------------------------------------------------------------------------------

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # committed = in the WAL: survives a process crash
        db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on the worker (see the class)
        db.executescript(_SCHEMA)
        for tenant, count in db.execute("SELECT tenant, COUNT(*) FROM conversations GROUP BY tenant"):
            self._counts[tenant] = count
        self._db = db

    async def _run(self, function: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, function)

    async def __aenter__(self) -> Self:
        await self._run(self._open)  # opening counts every tenant's conversations: off the loop
        if self.path != ":memory:":
            self._checkpoints = asyncio.create_task(self._checkpoint_loop(), name="runtime store checkpoints")
        return self

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_interval)
            await self._run(self._checkpoint)

    def _checkpoint(self) -> None:
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the database and the worker thread; idempotent."""
        task, self._checkpoints = self._checkpoints, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        db, self._db = self._db, None
        if db is not None:
            db.close()

        def close_checkpointer() -> None:
            checkpointer, self._checkpointer = self._checkpointer, None
            if checkpointer is not None:
                checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                checkpointer.close()

        if self.path != ":memory:" and db is not None:
            await self._run(close_checkpointer)
        self._worker.shutdown(wait=False)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the conversation store is not open: use it inside 'async with'")
        return self._db

    # --- the protocol ------------------------------------------------------------------------------

    async def append(self, tenant: str, conversation_id: str, turn: StoredTurn) -> None:
        body = turn.to_record()

        def write() -> None:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                new = (
                    db.execute(
                        "INSERT OR IGNORE INTO conversations (tenant, id, updated) VALUES (?, ?, ?)",
                        (tenant, conversation_id, turn.at),
                    ).rowcount
                    == 1
                )
                if not new:
                    db.execute(
                        "UPDATE conversations SET updated = ? WHERE tenant = ? AND id = ?",
                        (turn.at, tenant, conversation_id),
                    )
                (seq,) = db.execute(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE tenant = ? AND conversation = ?",
                    (tenant, conversation_id),
                ).fetchone()
                db.execute("INSERT INTO turns VALUES (?, ?, ?, ?)", (tenant, conversation_id, seq, body))
                if seq > self.max_turns:  # the oldest turn beyond the bound goes
                    db.execute(
                        "DELETE FROM turns WHERE tenant = ? AND conversation = ? AND seq <= ?",
                        (tenant, conversation_id, seq - self.max_turns),
                    )
                evicted: list[str] = []
                if new:
                    self._counts[tenant] = self._counts.get(tenant, 0) + 1
                    if self._counts[tenant] > self.max_conversations:
                        evicted = self._evict(db, tenant, self._counts[tenant] - self.max_conversations)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            key = (tenant, conversation_id)
            recent = self._recent.get(key)
            if conversation_id in evicted:  # an append older than every other conversation
                return
            if new:
                self._remember(key, [turn])
            elif recent is not None:
                recent.append(turn)
                del recent[: -self._window]
                self._recent.move_to_end(key)

        write()

    def _remember(self, key: tuple[str, str], turns: list[StoredTurn]) -> None:
        if not self._window:
            return
        self._recent[key] = turns
        self._recent.move_to_end(key)
        while len(self._recent) > self._recent_conversations:
            self._recent.popitem(last=False)

    def _evict(self, db: sqlite3.Connection, tenant: str, count: int) -> list[str]:
        """Drop the ``count`` least recently active conversations of ``tenant`` (in a transaction);
        their ids."""
        victims = db.execute(
            "SELECT id FROM conversations WHERE tenant = ? ORDER BY updated LIMIT ?", (tenant, count)
        ).fetchall()
        for (victim,) in victims:
            db.execute("DELETE FROM turns WHERE tenant = ? AND conversation = ?", (tenant, victim))
            db.execute("DELETE FROM conversations WHERE tenant = ? AND id = ?", (tenant, victim))
            self._recent.pop((tenant, victim), None)
        self._counts[tenant] = self._counts.get(tenant, 0) - len(victims)
        return [victim for (victim,) in victims]

    async def turns(self, tenant: str, conversation_id: str, *, last: int | None = None) -> list[StoredTurn]:
        key = (tenant, conversation_id)
        if last is not None and last <= self._window and (recent := self._recent.get(key)) is not None:
            self._recent.move_to_end(key)
            return recent[max(0, len(recent) - last) :]
        # Read at least a window's worth, so that the next turns of this conversation are cached.
        limit = -1 if last is None else max(last, self._window)
        rows = (
            self._conn()
            .execute(
                "SELECT body FROM turns WHERE tenant = ? AND conversation = ? ORDER BY seq DESC LIMIT ?",
                (tenant, conversation_id, limit),
            )
            .fetchall()
        )
        turns = [StoredTurn.from_record(body) for (body,) in reversed(rows)]
        if turns and (limit < 0 or len(turns) >= self._window or len(turns) < limit):
            self._remember(key, turns[max(0, len(turns) - self._window) :])  # the newest, or all
        return turns if last is None else turns[max(0, len(turns) - last) :]

    async def purge(self) -> int:
        """In chunks of ``PURGE_CHUNK`` conversations, one transaction each, yielding to the loop
        between them, so even a large purge never holds the loop for long."""
        cutoff = time.time() - self.max_age
        gone = 0
        while True:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                old = db.execute(
                    "SELECT tenant, id FROM conversations WHERE updated < ? LIMIT ?", (cutoff, PURGE_CHUNK)
                ).fetchall()
                for tenant, conversation in old:
                    self._recent.pop((tenant, conversation), None)
                    db.execute(
                        "DELETE FROM turns WHERE tenant = ? AND conversation = ?", (tenant, conversation)
                    )
                    db.execute(
                        "DELETE FROM conversations WHERE tenant = ? AND id = ?", (tenant, conversation)
                    )
                    self._counts[tenant] = self._counts.get(tenant, 0) - 1
                over = [
                    (t, c - self.max_conversations)
                    for t, c in self._counts.items()
                    if c > self.max_conversations
                ]
                for tenant, excess in over:
                    gone += len(self._evict(db, tenant, min(excess, PURGE_CHUNK)))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            gone += len(old)
            if len(old) < PURGE_CHUNK and not over:
                return gone
            await asyncio.sleep(0)

    async def conversations(self, tenant: str, *, limit: int = 50) -> list[ConversationSummary]:
        # One indexed statement, on the loop like the other reads (a listing is bounded by limit).
        rows = (
            self._conn()
            .execute(
                """SELECT c.id, c.updated, COUNT(t.seq),
                          (SELECT body FROM turns f WHERE f.tenant = c.tenant AND f.conversation = c.id
                           ORDER BY f.seq LIMIT 1)
                   FROM conversations c LEFT JOIN turns t ON t.tenant = c.tenant AND t.conversation = c.id
                   WHERE c.tenant = ? GROUP BY c.id ORDER BY c.updated DESC LIMIT ?""",
                (tenant, limit),
            )
            .fetchall()
        )
        return [
            ConversationSummary(conversation_id, json.loads(first)["query"] if first else "", turns, updated)
            for conversation_id, updated, turns, first in rows
        ]

    async def count(self, tenant: str) -> int:
        """How many conversations ``tenant`` has (tests, metrics)."""
        return self._counts.get(tenant, 0)
