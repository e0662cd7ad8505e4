"""The Events API (7.3.2.2): Server-Sent Events fed from the store's change feed.

Each subscriber gets a bounded queue. A consumer too slow to keep up (its queue overflows, or a write
to it blocks longer than ``write_timeout``) is disconnected instead of slowing the writers or
growing memory: it reconnects with ``Last-Event-ID`` and the missed events
are replayed from the store's journal, so nothing is lost (as long as the journal still holds
them).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from ._problems import HTTPProblem
from ._store import Change, SQLiteStore

__all__ = ["EVENT_TYPES", "EventHub"]

EVENT_TYPES = ("thing_created", "thing_updated", "thing_deleted")
logger = logging.getLogger("registry.events")
_CLOSE = object()


def _frame(seq: int, kind: str, data: Any) -> bytes:
    # One JSON line: no newline inside, so a single ``data:`` field carries it.
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\nid: {seq}\n\n".encode()


class _Subscriber:
    def __init__(self, kind: str | None, diff: bool, size: int) -> None:
        self.kind = kind
        self.diff = diff
        self.queue: asyncio.Queue[Any] = asyncio.Queue(size)

    def wants(self, kind: str) -> bool:
        return self.kind is None or self.kind == kind

    def payload(self, kind: str, thing_id: str, diff: dict[str, Any]) -> dict[str, Any]:
        # diff=true: full TD on create, merge patch (always with the id) on update; id only on delete.
        return diff if self.diff and kind != "thing_deleted" else {"id": thing_id}


class EventHub:
    """Fans changes out to SSE subscribers; ``queue_size`` bounds each one's backlog."""

    def __init__(
        self,
        store: SQLiteStore,
        *,
        queue_size: int = 1000,
        keepalive: float = 15.0,
        write_timeout: float = 10.0,
    ) -> None:
        self.store = store
        self.queue_size = queue_size
        self.write_timeout = write_timeout
        self.keepalive = keepalive
        self._subscribers: set[_Subscriber] = set()
        store.subscribe(self.publish)

    def publish(self, change: Change) -> None:
        for sub in list(self._subscribers):
            if not sub.wants(change.kind):
                continue
            try:
                sub.queue.put_nowait(change)
            except asyncio.QueueFull:
                # Too slow: drop it; it resumes from its Last-Event-ID without losing events.
                self._subscribers.discard(sub)
                sub.queue.get_nowait()
                sub.queue.put_nowait(_CLOSE)

    def close(self) -> None:
        """End every stream (at shutdown)."""
        for sub in self._subscribers:
            while not sub.queue.empty():
                sub.queue.get_nowait()
            sub.queue.put_nowait(_CLOSE)
        self._subscribers.clear()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info.get("type")
        if kind is not None and kind not in EVENT_TYPES:
            raise HTTPProblem(404, f"no event type {kind!r}; the types are {', '.join(EVENT_TYPES)}")
        diff_arg = request.query.get("diff", "false").lower()
        if diff_arg not in ("true", "false"):
            raise HTTPProblem(400, f"diff must be true or false, not {diff_arg!r}")
        last = request.headers.get("Last-Event-ID", "").strip()
        if last and not last.isdigit():
            raise HTTPProblem(400, f"Last-Event-ID {last!r} is not an event id of this directory")
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        if request.method == "HEAD":
            return web.Response(headers=headers)
        sub = _Subscriber(kind, diff_arg == "true", self.queue_size)
        self._subscribers.add(sub)  # before the replay, so nothing falls between the two
        try:
            response = web.StreamResponse(headers=headers)
            await response.prepare(request)
            sent = int(last) if last else None
            if sent is not None and sent > self.store.last_seq:
                # An id this history never issued (a memory store before a restart): everything
                # this directory has journaled is news to that client.
                sent = 0
            if sent is not None:
                sent = await self._replay(response, sub, sent)
            await self._stream(response, sub, sent)
            return response
        finally:
            self._subscribers.discard(sub)

    async def _replay(self, response: web.StreamResponse, sub: _Subscriber, after: int) -> int:
        while True:
            rows = await self.store.changes_since(after, 500)
            for seq, kind, thing_id, diff in rows:
                if sub.wants(kind):
                    await response.write(_frame(seq, kind, sub.payload(kind, thing_id, json.loads(diff))))
                after = seq
            if len(rows) < 500:
                return after

    async def _stream(self, response: web.StreamResponse, sub: _Subscriber, sent: int | None) -> None:
        await response.write(b": stream open\n\n")
        while True:
            try:
                item = await asyncio.wait_for(sub.queue.get(), self.keepalive)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if item is _CLOSE:
                return
            change: Change = item
            if sent is not None and change.seq <= sent:
                continue  # already replayed from the journal
            await response.write(
                _frame(change.seq, change.kind, sub.payload(change.kind, change.id, change.diff))
            )
