"""The Events API (7.3.2.2): Server-Sent Events fed from the store's change feed.

Each subscriber gets a bounded queue. A consumer too slow to keep up (its queue overflows, or a write
to it blocks longer than ``write_timeout``) is disconnected instead of slowing the writers or
growing memory: it reconnects with ``Last-Event-ID`` and the missed events
are replayed from the store's journal, so nothing is lost (as long as the journal still holds
them). Event ids are the journal's own (opaque here); the hub orders changes by their ``seq``.

Each live event is encoded once, whatever the number of subscribers (one encoding per payload
form: the whole diff, or the id only), not once per subscriber on the event loop. Nothing but
the headers precedes the first event (some clients, such as the Go r3labs/sse, turn a comment
into an empty event), and keep-alive comments come only after ``keepalive`` seconds of silence.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from wot_agents._sse import EventStream, encode_event, stream_headers

from ._backend import Change, ChangeFeed, ChangeJournal, JournalEntry
from ._problems import HTTPProblem

__all__ = ["EVENT_TYPES", "EventHub"]

EVENT_TYPES = ("thing_created", "thing_updated", "thing_deleted")
logger = logging.getLogger("registry.events")
_CLOSE = object()


class _Outgoing:
    """A change on its way to the subscribers, encoded (at most) once per payload form."""

    __slots__ = ("_frames", "change")

    def __init__(self, change: Change) -> None:
        self.change = change
        self._frames: dict[bool, bytes] = {}

    def frame(self, diff: bool) -> bytes:
        change = self.change
        full = diff and change.kind != "thing_deleted"
        frame = self._frames.get(full)
        if frame is None:
            data = json.dumps(_payload(full, change.id, change.diff), ensure_ascii=False)
            frame = self._frames[full] = encode_event(data, event=change.kind, id=change.event_id)
        return frame


def _payload(full: bool, thing_id: str, diff: dict[str, Any]) -> dict[str, Any]:
    # diff=true: full TD on create, merge patch (always with the id) on update; id only on delete.
    return diff if full else {"id": thing_id}


class _Subscriber:
    def __init__(self, kind: str | None, diff: bool, size: int) -> None:
        self.kind = kind
        self.diff = diff
        self.queue: asyncio.Queue[Any] = asyncio.Queue(size)

    def wants(self, kind: str) -> bool:
        return self.kind is None or self.kind == kind

    def payload(self, kind: str, thing_id: str, diff: dict[str, Any]) -> dict[str, Any]:
        return _payload(self.diff and kind != "thing_deleted", thing_id, diff)


class EventHub:
    """Fans the feed's changes out to SSE subscribers; ``queue_size`` bounds each one's backlog."""

    def __init__(
        self,
        feed: ChangeFeed,
        journal: ChangeJournal,
        *,
        queue_size: int = 1000,
        keepalive: float = 15.0,
        write_timeout: float = 10.0,
    ) -> None:
        self.journal = journal
        self.queue_size = queue_size
        self.write_timeout = write_timeout
        self.keepalive = keepalive
        self._subscribers: set[_Subscriber] = set()
        feed.subscribe(self.publish)

    @property
    def subscribers(self) -> int:
        """Streams open now."""
        return len(self._subscribers)

    def publish(self, change: Change) -> None:
        outgoing = _Outgoing(change)
        for sub in list(self._subscribers):
            if not sub.wants(change.kind):
                continue
            try:
                sub.queue.put_nowait(outgoing)
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
        stream = EventStream(request, keepalive=self.keepalive, write_timeout=self.write_timeout)
        last = stream.last_event_id
        if last and not self.journal.valid_event_id(last):
            raise HTTPProblem(400, f"Last-Event-ID {last!r} is not an event id of this directory")
        if request.method == "HEAD":
            return web.Response(headers=stream_headers())
        sub = _Subscriber(kind, diff_arg == "true", self.queue_size)
        self._subscribers.add(sub)  # before the replay, so nothing falls between the two
        try:
            await stream.open(comment=None)  # headers only: the first frame is an event
            sent = await self._replay(stream, sub, last) if last else None
            await stream.pipe(self._live(sub, sent))
        except ConnectionResetError:
            pass  # the client went away (or stopped reading) during the replay
        finally:
            self._subscribers.discard(sub)
        return stream.response

    async def _replay(self, stream: EventStream, sub: _Subscriber, after: str) -> int | None:
        """Send the journal's entries after the event id ``after``; the seq of the last one sent.

        Changes published meanwhile are queued for ``sub`` too: those up to that seq were sent.
        """
        sent: int | None = None
        while True:
            entries: list[JournalEntry] = await self.journal.changes_since(after, 500)
            for entry in entries:
                if sub.wants(entry.kind):
                    payload = sub.payload(entry.kind, entry.id, entry.diff)
                    await stream.send(payload, event=entry.kind, id=entry.event_id)
                after, sent = entry.event_id, entry.seq
            if len(entries) < 500:
                return sent

    async def _live(self, sub: _Subscriber, sent: int | None) -> AsyncIterator[bytes]:
        """The subscriber's changes as encoded events, until it is closed; keep-alives are the
        writer's."""
        while True:
            item = await sub.queue.get()
            if item is _CLOSE:
                return
            outgoing: _Outgoing = item
            if sent is not None and outgoing.change.seq <= sent:
                continue  # already replayed from the journal
            yield outgoing.frame(sub.diff)
