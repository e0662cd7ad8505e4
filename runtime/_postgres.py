"""The conversation store on PostgreSQL, shared by every runtime replica.

Several runtime pods serve one tenant: any of them may get the next turn of any conversation,
so the turns (and with them the sticky agent and the subset of each conversation) live in one
database they all reach. A turn is committed (PostgreSQL syncs its WAL on commit) before
:meth:`append` returns, so an answered turn is readable on every replica at once and survives a
crash of any of them. Appends to one conversation from two replicas are serialized by the
conversation's row lock (the upsert takes it), so turn numbers never collide. The bounds are
those of :class:`SQLiteConversationStore`: turns per conversation, conversations per tenant
(least recently active go), age.

asyncpg: the asyncio PostgreSQL driver with its own protocol implementation (no thread pool, no
libpq), prepared statements and a connection pool.
"""

from __future__ import annotations

import json
import time
from types import TracebackType
from typing import Any, Self

from ._store import PURGE_CHUNK, ConversationSummary, StoredTurn

__all__ = ["PostgresConversationStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    tenant TEXT NOT NULL, id TEXT NOT NULL, updated DOUBLE PRECISION NOT NULL, PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS conversations_by_age ON conversations (tenant, updated);
CREATE INDEX IF NOT EXISTS conversations_updated ON conversations (updated);
CREATE TABLE IF NOT EXISTS turns (
    tenant TEXT NOT NULL, conversation TEXT NOT NULL, seq BIGINT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (tenant, conversation, seq)
);
"""


class PostgresConversationStore:
    """Conversations in the PostgreSQL database at ``dsn`` (``postgresql://user@host:port/db``)."""

    def __init__(
        self,
        dsn: str,
        *,
        max_turns: int = 100,
        max_conversations: int = 100_000,
        max_age: float = 30 * 24 * 3600,
        pool_size: int = 10,
    ) -> None:
        self.dsn = dsn
        self.max_turns = max_turns
        self.max_conversations = max_conversations
        self.max_age = max_age
        self.pool_size = pool_size
        self._pool: Any = None  # asyncpg.Pool

    async def __aenter__(self) -> Self:
        try:
            import asyncpg
        except ImportError as exc:  # pragma: no cover - the extra is missing
            raise RuntimeError("PostgreSQL needs asyncpg: pip install 'wot-agents[postgres]'") from exc
        self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.pool_size)
        async with self._pool.acquire() as db:
            # Replicas starting together: one creates the tables, the others wait for its lock.
            async with db.transaction():
                await db.execute("SELECT pg_advisory_xact_lock(7301)")
                await db.execute(_SCHEMA)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool (waiting for statements in flight); idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _db(self) -> Any:
        if self._pool is None:
            raise RuntimeError("the conversation store is not open: use it inside 'async with'")
        return self._pool

    async def append(self, tenant: str, conversation_id: str, turn: StoredTurn) -> None:
        body = turn.to_record()
        async with self._db().acquire() as db, db.transaction():
            new = await db.fetchval(
                """INSERT INTO conversations (tenant, id, updated) VALUES ($1, $2, $3)
                   ON CONFLICT (tenant, id) DO UPDATE SET updated = GREATEST(conversations.updated, $3)
                   RETURNING xmax = 0""",
                tenant,
                conversation_id,
                turn.at,
            )
            seq = await db.fetchval(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM turns WHERE tenant = $1 AND conversation = $2",
                tenant,
                conversation_id,
            )
            await db.execute("INSERT INTO turns VALUES ($1, $2, $3, $4)", tenant, conversation_id, seq, body)
            await db.execute(
                "DELETE FROM turns WHERE tenant = $1 AND conversation = $2 AND seq <= $3",
                tenant,
                conversation_id,
                seq - self.max_turns,
            )
            if new:
                count = await db.fetchval("SELECT COUNT(*) FROM conversations WHERE tenant = $1", tenant)
                if count > self.max_conversations:
                    await self._evict(db, tenant, count - self.max_conversations)

    @staticmethod
    async def _evict(db: Any, tenant: str, count: int) -> int:
        """Drop the ``count`` least recently active conversations of ``tenant`` (in a transaction)."""
        victims = await db.fetch(
            "DELETE FROM conversations WHERE (tenant, id) IN (SELECT tenant, id FROM conversations "
            "WHERE tenant = $1 ORDER BY updated LIMIT $2) RETURNING id",
            tenant,
            count,
        )
        ids = [row["id"] for row in victims]
        await db.execute(
            "DELETE FROM turns WHERE tenant = $1 AND conversation = ANY($2::text[])", tenant, ids
        )
        return len(ids)

    async def turns(self, tenant: str, conversation_id: str, *, last: int | None = None) -> list[StoredTurn]:
        rows = await self._db().fetch(
            "SELECT body FROM turns WHERE tenant = $1 AND conversation = $2 ORDER BY seq DESC LIMIT $3",
            tenant,
            conversation_id,
            last,
        )
        return [StoredTurn.from_record(row["body"]) for row in reversed(rows)]

    async def conversations(self, tenant: str, *, limit: int = 50) -> list[ConversationSummary]:
        rows = await self._db().fetch(
            """SELECT c.id, c.updated, COUNT(t.seq) AS turns,
                      (SELECT body FROM turns f WHERE f.tenant = c.tenant AND f.conversation = c.id
                       ORDER BY f.seq LIMIT 1) AS first
               FROM conversations c LEFT JOIN turns t ON t.tenant = c.tenant AND t.conversation = c.id
               WHERE c.tenant = $1 GROUP BY c.tenant, c.id, c.updated ORDER BY c.updated DESC LIMIT $2""",
            tenant,
            limit,
        )
        return [
            ConversationSummary(
                row["id"],
                json.loads(row["first"])["query"] if row["first"] else "",
                row["turns"],
                row["updated"],
            )
            for row in rows
        ]

    async def purge(self) -> int:
        """Old conversations, then each tenant's excess, in chunks of ``PURGE_CHUNK`` per transaction."""
        cutoff = time.time() - self.max_age
        gone = 0
        async with self._db().acquire() as db:
            while True:
                async with db.transaction():
                    old = await db.fetch(
                        "DELETE FROM conversations WHERE (tenant, id) IN (SELECT tenant, id FROM "
                        "conversations WHERE updated < $1 LIMIT $2) RETURNING tenant, id",
                        cutoff,
                        PURGE_CHUNK,
                    )
                    for row in old:
                        await db.execute(
                            "DELETE FROM turns WHERE tenant = $1 AND conversation = $2",
                            row["tenant"],
                            row["id"],
                        )
                gone += len(old)
                if len(old) < PURGE_CHUNK:
                    break
            over = await db.fetch(
                "SELECT tenant, COUNT(*) - $1 AS excess FROM conversations "
                "GROUP BY tenant HAVING COUNT(*) > $1",
                self.max_conversations,
            )
            for row in over:
                async with db.transaction():
                    gone += await self._evict(db, row["tenant"], row["excess"])
        return gone

    async def count(self, tenant: str) -> int:
        """How many conversations ``tenant`` has (tests, metrics)."""
        return int(await self._db().fetchval("SELECT COUNT(*) FROM conversations WHERE tenant = $1", tenant))
