"""Server-Sent Events (WHATWG HTML, 9.2): the one writer and the one parser of wot-agents.

Every stream served over HTTP (an agent's property observations and events, the directory's
notifications, the runtime's streams) is written by :class:`EventStream`, and every one read
(the HTTP binding's client, ``DirectoryClient.events``) is parsed by :class:`EventStreamParser`,
so keep-alives, resume ids and the corner cases of the format are handled once::

    # a server: an aiohttp handler
    async def events(request: web.Request) -> web.StreamResponse:
        stream = EventStream(request, keepalive=15.0)
        after = stream.last_event_id                   # the client's Last-Event-ID, to resume
        await stream.open()                            # headers + an opening comment
        await stream.pipe(changes(after))              # until the source ends, the client goes
        return stream.response                         # or stream.close() is called

    # a client
    async for event in parse_events(response.content.iter_any()):
        print(event.event, event.id, event.json())

``pipe`` writes each value of its source as one event: a :class:`ServerSentEvent` with its
fields, anything else as JSON ``data``. While the source is idle a comment goes out every
``keepalive`` seconds, which also finds clients that went away silently; a write blocked for more
than ``write_timeout`` (a client too slow to read) ends the stream, so one slow client costs
neither memory nor the writers' time.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = [
    "EVENT_STREAM",
    "EventStream",
    "EventStreamParser",
    "ServerSentEvent",
    "encode_comment",
    "encode_event",
    "parse_events",
    "stream_headers",
]

#: The media type of an event stream.
EVENT_STREAM = "text/event-stream"

#: The largest event a parser accepts by default (bytes of field lines): a bound on a client's memory.
MAX_EVENT = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One event: its ``data`` (text), ``event`` type, ``id`` and ``retry`` (milliseconds).

    Written, ``id`` and ``retry`` are sent only when set. Parsed, ``id`` is the stream's last
    event id when the event was dispatched (what to send as ``Last-Event-ID`` to resume after
    it; None when the stream never set one) and ``retry`` the reconnection time, if the server
    set one.
    """

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """``data`` decoded as JSON (raises ``ValueError`` when it is not JSON)."""
        return json.loads(self.data)


def encode_event(
    data: Any, *, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """One event as bytes on the wire; ``data`` that is not text is written as one line of JSON.

    Text with line breaks becomes several ``data:`` lines, which the parser joins back with
    ``\\n``. An ``event`` or ``id`` with a line break (or an ``id`` with NUL) cannot be written
    and raises ``ValueError``.
    """
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    lines: list[str] = []
    if event is not None and event != "message":
        _check_field("event", event)
        lines.append(f"event: {event}")
    lines += [f"data: {line}" for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    if id is not None:
        _check_field("id", id)
        if "\0" in id:
            raise ValueError("an SSE id cannot contain NUL")
        lines.append(f"id: {id}")
    if retry is not None:
        lines.append(f"retry: {int(retry)}")
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def encode_comment(text: str = "") -> bytes:
    """A comment line (clients ignore it): keep-alives and the opening of a stream."""
    return "".join(f": {line}\n" for line in (text.splitlines() or [""])).encode("utf-8") + b"\n"


def _check_field(name: str, value: str) -> None:
    if "\n" in value or "\r" in value:
        raise ValueError(f"an SSE {name} cannot contain a line break: {value!r}")


class EventStream:
    """The writer: an aiohttp ``text/event-stream`` response with keep-alives and resume ids.

    ``keepalive`` is the number of seconds of silence after which a comment is sent;
    ``write_timeout`` bounds one write (a client that does not read for that long is dropped);
    ``headers`` are added to the response (e.g. CORS).
    """

    def __init__(
        self,
        request: web.Request,
        *,
        keepalive: float = 15.0,
        write_timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.request = request
        self.keepalive = keepalive
        self.write_timeout = write_timeout
        self.response = web.StreamResponse(headers={**stream_headers(), **(headers or {})})
        self._closed = asyncio.Event()

    @property
    def last_event_id(self) -> str | None:
        """The ``Last-Event-ID`` the client resumes after (stripped), or None on a first connection."""
        value = self.request.headers.get("Last-Event-ID", "").strip()
        return value or None

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def open(self, comment: str | None = "stream open") -> None:
        """Send the headers, and ``comment`` (which also lets a client see the stream is open)."""
        await self.response.prepare(self.request)
        if comment is not None:
            await self._write(encode_comment(comment))

    async def send(
        self, data: Any, *, event: str | None = None, id: str | None = None, retry: int | None = None
    ) -> None:
        """Write one event (see :func:`encode_event`); a ``ServerSentEvent`` is written as it is,
        and ``bytes`` are an event already encoded by :func:`encode_event` (one encoding for the
        many streams an event goes to).

        Raises ``ConnectionResetError`` when the client went away or did not read for ``write_timeout``.
        """
        if isinstance(data, bytes):
            await self._write(data)
            return
        if isinstance(data, ServerSentEvent):
            event, id, retry, data = data.event, data.id, data.retry, data.data
        await self._write(encode_event(data, event=event, id=id, retry=retry))

    async def comment(self, text: str = "") -> None:
        await self._write(encode_comment(text))

    def close(self) -> None:
        """End :meth:`pipe` (from any task on the loop, e.g. at server shutdown)."""
        self._closed.set()

    async def pipe(self, source: AsyncIterable[Any], *, keepalive_comment: str = "keepalive") -> None:
        """Write every value of ``source`` until it ends, the client goes, or :meth:`close`.

        A client that disconnects or stops reading ends the stream quietly (it is not an error
        of the server); ``source`` is closed (``aclose``) in every case.
        """
        values = aiter(source)
        closing = asyncio.ensure_future(self._closed.wait())
        pending: asyncio.Future[Any] | None = None
        try:
            while not self._closed.is_set():
                if pending is None:
                    pending = asyncio.ensure_future(anext(values))
                done, _ = await asyncio.wait(
                    {pending, closing}, timeout=self.keepalive, return_when=asyncio.FIRST_COMPLETED
                )
                if pending in done:
                    finished, pending = pending, None
                    try:
                        value = finished.result()
                    except StopAsyncIteration:
                        return
                    await self.send(value)
                elif not done:
                    await self.comment(keepalive_comment)
        except _ClientGone:
            return  # the client went away, or stopped reading for write_timeout: its loss
        finally:
            for future in (pending, closing):
                if future is not None:
                    future.cancel()
                    with contextlib.suppress(BaseException):
                        await future
            aclose = getattr(values, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _write(self, data: bytes) -> None:
        try:
            async with asyncio.timeout(self.write_timeout):
                await self.response.write(data)
        except ConnectionError as exc:
            raise _ClientGone(f"the client went away: {exc}") from exc
        except TimeoutError:
            raise _ClientGone(f"the client read nothing for {self.write_timeout} s") from None


class _ClientGone(ConnectionResetError):
    """A write failed because the client disconnected or stopped reading."""


def stream_headers() -> dict[str, str]:
    """The headers of an event stream response (also for a ``HEAD`` that only probes it)."""
    return {"Content-Type": EVENT_STREAM, "Cache-Control": "no-cache"}


class EventStreamParser:
    """The parser: feed it bytes as they arrive, in chunks of any size, and get whole events.

    It follows the WHATWG algorithm: lines end with CRLF, LF or CR; a leading BOM is dropped;
    comments and unknown fields are ignored; an event is dispatched at a blank line and only
    when it has data; an ``id`` with NUL is ignored; ``retry`` must be digits. ``last_event_id``
    and ``retry`` keep the stream's state between events. An event larger than ``max_event``
    characters raises ``ValueError`` (a bound on the client's memory).
    """

    def __init__(self, *, last_event_id: str | None = None, max_event: int = MAX_EVENT) -> None:
        self.last_event_id = last_event_id
        self.retry: int | None = None
        self.max_event = max_event
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False
        self._after_cr = False  # the last chunk ended with CR: an LF first in the next one is its pair
        self._partial: list[str] = []  # the unfinished line
        self._size = 0  # characters of the event so far, the unfinished line included
        self._data: list[str] = []
        self._event = ""

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events completed by ``chunk`` (often none, sometimes several)."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = False
        events: list[ServerSentEvent] = []
        start = 0
        for end in _LINE_END.finditer(text):
            self._partial.append(text[start : end.start()])
            line = "".join(self._partial)
            self._partial = []
            start = end.end()
            self._after_cr = end.group() == "\r" and start == len(text)
            event = self._line(line)
            if event is not None:
                events.append(event)
        if start < len(text):
            self._partial.append(text[start:])
            self._size += len(text) - start
        if self._size > self.max_event:
            raise ValueError(f"a server-sent event over {self.max_event} characters")
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
            self._size = sum(len(part) for part in self._data)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value.isascii() and value.isdigit():
                self.retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._event, self._size = [], "", 0
        if not data:
            return None
        return ServerSentEvent("\n".join(data), event or "message", self.last_event_id, self.retry)


_LINE_END = re.compile("\r\n|\r|\n")


async def parse_events(
    chunks: AsyncIterable[bytes], *, parser: EventStreamParser | None = None
) -> AsyncIterator[ServerSentEvent]:
    """Every event of a stream of bytes (e.g. ``response.content.iter_any()``).

    A partial event at the end is dropped, as the standard says.

    Pass a ``parser`` to keep its ``last_event_id`` and ``retry`` after the stream ends (to resume).
    """
    parser = parser or EventStreamParser()
    async for chunk in chunks:
        for event in parser.feed(chunk):
            yield event
