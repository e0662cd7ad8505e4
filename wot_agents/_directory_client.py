"""A client of W3C WoT Thing Description Directories (WoT Discovery 7.3.2), over aiohttp.

It speaks the standard Directory Service API, so it works with any conforming directory, and
adds the wot-agents JSON filter search where the directory offers it::

    async with DirectoryClient("http://127.0.0.1:8081", token="s3cret") as directory:
        await directory.register(td, ttl=60)          # PUT /things/{id}, or POST when td has no id
        await directory.patch(td["id"], {})           # an empty merge patch renews the ttl
        td = await directory.get(td["id"], language="de")  # Accept-Language
        if await directory.exists(td["id"]): ...      # HEAD; directory.count() is the total
        async for td in directory.list(page_size=100):  # follows the Link rel="next" pages
            ...
        found = await directory.search(tenant="acme", type="lmos:Agent")
        names = await directory.jsonpath("$[?@.title=='Weather'].id")
        rows = await directory.sparql("SELECT ?t WHERE { ?t a <https://www.w3.org/2019/wot/td#Thing> }")
        async for event in directory.events(diff=True):  # resumes after a dropped connection
            print(event.type, event.data["id"])

Every failure is a :class:`DirectoryError` with the HTTP ``status`` (None when the directory
could not be reached) and the directory's RFC 7807 ``problem`` document.

A search the directory cannot answer yet (503 with ``Retry-After``: its SPARQL index is still
catching up with recent writes, or it is busy with other scans) is asked again after the time the
directory names, for up to ``busy_timeout`` seconds in all; then the 503 is raised, saying so.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime
import email.utils
import enum
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import quote, urljoin

import aiohttp

from ._errors import DirectoryError
from ._problem import ProblemDetails
from ._sse import EVENT_STREAM, EventStreamParser, parse_events

__all__ = ["DirectoryClient", "DirectoryEvent"]

EventType = Literal["thing_created", "thing_updated", "thing_deleted"]


@dataclass(frozen=True, slots=True)
class DirectoryEvent:
    """One notification: ``type`` (thing_created...), ``id`` (the SSE event id), ``data``."""

    type: str
    id: str | None
    data: dict[str, Any]


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


class DirectoryClient:
    """An async context manager over one aiohttp session to one directory.

    ``token`` is sent as ``Authorization: Bearer`` on every request; ``timeout`` bounds each
    request (not event streams); ``busy_timeout`` bounds the total wait of a search for a busy
    directory (503 with ``Retry-After``). Pass ``session`` to reuse an aiohttp session you own.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        busy_timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/"
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._busy_timeout = busy_timeout
        self._session = session
        self._owns_session = session is None
        self._state = _State.UNOPENED

    async def __aenter__(self) -> Self:
        if self._state is not _State.UNOPENED:
            raise RuntimeError("a DirectoryClient can be opened once; make a new one")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._state = _State.OPENED
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the session (if this client made it); idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        if self._owns_session and self._session is not None:
            await self._session.close()

    # -- plumbing ----------------------------------------------------------------------------
    def _thing_url(self, thing_id: str) -> str:
        return f"{self.url}things/{quote(thing_id, safe='')}"

    async def _request(
        self,
        method: str,
        path: str,
        *,
        expect: tuple[int, ...] = (200,),
        wait_busy: bool = False,
        **kwargs: Any,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request; with ``wait_busy``, repeated while the directory answers 503 with
        ``Retry-After`` (for queries only: they change nothing, so asking again is safe)."""
        if self._state is not _State.OPENED or self._session is None:
            raise RuntimeError("use the DirectoryClient inside 'async with'")
        url = path if path.startswith(("http://", "https://")) else urljoin(self.url, path)
        headers = {**self._headers, **kwargs.pop("headers", {})}
        started = time.monotonic()
        while True:
            try:
                async with self._session.request(
                    method, url, headers=headers, timeout=self._timeout, **kwargs
                ) as response:
                    body = await response.read()
                    if response.status in expect:
                        return response.status, response.headers, body
                    delay = _retry_after(response.headers.get("Retry-After"))
                    if not wait_busy or response.status != 503 or delay is None:
                        raise _error(method, url, response.status, body)
                    waited = time.monotonic() - started
                    if waited + delay > self._busy_timeout:
                        raise _error(
                            method, url, response.status, body, waited=waited, limit=self._busy_timeout
                        )
            except aiohttp.ClientError as exc:
                raise DirectoryError(f"{method} {url} failed: {exc or type(exc).__name__}") from exc
            except TimeoutError as exc:
                raise DirectoryError(f"{method} {url}: no answer within {self._timeout.total} s") from exc
            await asyncio.sleep(delay)

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        _, _, body = await self._request(method, path, **kwargs)
        return json.loads(body)

    # -- Things API --------------------------------------------------------------------------
    async def register(self, td: Mapping[str, Any], *, ttl: float | None = None) -> str:
        """Create or replace ``td`` and return its id (the directory's ``urn:uuid:`` for an anonymous TD).

        ``ttl`` sets ``registration.ttl``: the directory then forgets the TD after ``ttl``
        seconds unless it is renewed (e.g. with ``patch(id, {})``).
        """
        document = dict(td)
        if ttl is not None:
            document["registration"] = {**(document.get("registration") or {}), "ttl": ttl}
        body = json.dumps(document).encode()
        headers = {"Content-Type": "application/td+json"}
        if "id" in document:
            await self._request(
                "PUT", self._thing_url(document["id"]), data=body, headers=headers, expect=(201, 204)
            )
            return str(document["id"])
        _, response_headers, _ = await self._request(
            "POST", "things", data=body, headers=headers, expect=(201,)
        )
        location = response_headers.get("Location", "")
        return _id_from_location(location)

    async def update(self, td: Mapping[str, Any]) -> None:
        """Replace a registered TD (PUT); the same as :meth:`register` for a TD with an id."""
        if "id" not in td:
            raise ValueError("update() needs a TD with an id")
        await self.register(td)

    async def patch(self, thing_id: str, patch: Mapping[str, Any]) -> None:
        """Apply an RFC 7396 merge patch; ``{}`` just renews a ``ttl`` registration."""
        await self._request(
            "PATCH",
            self._thing_url(thing_id),
            data=json.dumps(patch).encode(),
            headers={"Content-Type": "application/merge-patch+json"},
            expect=(204,),
        )

    async def get(self, thing_id: str, *, language: str | None = None) -> dict[str, Any]:
        """The enriched TD (with its ``registration`` information).

        ``language`` is sent as ``Accept-Language`` (e.g. ``"de, en;q=0.5"``): a directory that
        negotiates answers with ``title``/``description`` taken from the TD's own translations.
        """
        headers = {"Accept-Language": language} if language else {}
        return await self._json("GET", self._thing_url(thing_id), headers=headers)  # type: ignore[no-any-return]

    async def exists(self, thing_id: str) -> bool:
        """Whether the directory holds ``thing_id``, asked with HEAD (no TD is transferred)."""
        status, _, _ = await self._request("HEAD", self._thing_url(thing_id), expect=(200, 404))
        return status == 200

    async def count(self) -> int:
        """How many TDs the directory holds (the ``total`` of a one-TD collection page)."""
        page = await self._json("GET", "things", params={"limit": "1", "format": "collection"})
        return int(page["total"])

    async def describe(self) -> dict[str, Any]:
        """The directory's own TD (``/.well-known/wot``): its affordances and security."""
        return await self._json("GET", ".well-known/wot")  # type: ignore[no-any-return]

    async def delete(self, thing_id: str) -> None:
        await self._request("DELETE", self._thing_url(thing_id), expect=(204,))

    async def list(self, *, page_size: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every TD in id order, fetched page by page (following ``Link: rel="next"``)."""
        path: str | None = "things" + (f"?limit={page_size}" if page_size else "")
        while path is not None:
            _, headers, body = await self._request("GET", path)
            for td in json.loads(body):
                yield td
            path = _next_link(headers)

    # -- Search API --------------------------------------------------------------------------
    async def search(
        self,
        filter: Mapping[str, Any] | None = None,
        *,
        sort: builtins.list[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
        **fields: str | builtins.list[str],
    ) -> builtins.list[dict[str, Any]]:
        """The JSON filter search (``POST /search/filter``) of a wot-agents directory.

        Keyword fields are ANDed, a list is any-of: ``search(tenant="acme", channel=["web", "app"])``.
        ``filter`` takes a full expression: ``{"or": [{"capability": "forecast"}, {"q": "rain"}]}``.
        """
        expression: dict[str, Any] = dict(fields)
        if filter is not None:
            expression = {"and": [expression, dict(filter)]} if expression else dict(filter)
        request: dict[str, Any] = {"offset": offset}
        if expression:
            request["filter"] = expression
        if sort:
            request["sort"] = sort
        if limit is not None:
            request["limit"] = limit
        result = await self._json("POST", "search/filter", json=request, wait_busy=True)
        return result["members"]  # type: ignore[no-any-return]

    async def jsonpath(self, query: str) -> builtins.list[Any]:
        """An RFC 9535 JSONPath query over the array of all TDs."""
        return await self._json("GET", "search/jsonpath", params={"query": query}, wait_busy=True)  # type: ignore[no-any-return]

    async def sparql(self, query: str) -> Any:
        """A SPARQL query: SELECT/ASK give SPARQL JSON results, CONSTRUCT/DESCRIBE JSON-LD."""
        return await self._json(
            "POST",
            "search/sparql",
            data=query.encode(),
            headers={"Content-Type": "application/sparql-query"},
            wait_busy=True,
        )

    # -- Events API --------------------------------------------------------------------------
    async def events(
        self,
        type: EventType | None = None,
        *,
        diff: bool = False,
        last_event_id: str | None = None,
        reconnect: bool = True,
        retry_delay: float = 1.0,
        connected: asyncio.Event | None = None,
    ) -> AsyncIterator[DirectoryEvent]:
        """The directory's notifications as they happen (Server-Sent Events).

        When the connection drops, the client reconnects with ``Last-Event-ID`` and the directory
        replays what was missed; ``reconnect=False`` ends the iteration instead. ``connected`` is
        set each time the directory has accepted the stream: every change from then on will be
        notified (e.g. list the TDs only then, and no change falls between the list and the
        stream); it is cleared while the client reconnects.
        """
        if self._state is not _State.OPENED or self._session is None:
            raise RuntimeError("use the DirectoryClient inside 'async with'")
        url = urljoin(self.url, "events" + (f"/{type}" if type else ""))
        params = {"diff": "true"} if diff else {}
        while True:
            headers = {**self._headers, "Accept": EVENT_STREAM}
            if last_event_id is not None:
                headers["Last-Event-ID"] = last_event_id
            parser = EventStreamParser(last_event_id=last_event_id)
            try:
                async with self._session.get(
                    url, params=params, headers=headers, timeout=aiohttp.ClientTimeout(sock_connect=10)
                ) as response:
                    if response.status != 200:
                        raise _error("GET", url, response.status, await response.read())
                    if connected is not None:
                        connected.set()
                    async for event in parse_events(response.content.iter_any(), parser=parser):
                        yield DirectoryEvent(event.event, event.id, event.json())
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                if not reconnect:
                    raise DirectoryError(f"event stream {url} failed: {exc}") from exc
            finally:
                last_event_id = parser.last_event_id
                if connected is not None:
                    connected.clear()
            if not reconnect:
                return
            # The server's retry field, when it sent one, says how long to wait (in ms).
            await asyncio.sleep(parser.retry / 1000 if parser.retry is not None else retry_delay)


def _error(
    method: str, url: str, status: int, body: bytes, *, waited: float | None = None, limit: float = 0.0
) -> DirectoryError:
    """The error of an answer; ``waited``: the client gave up on a busy directory after that long."""
    problem = ProblemDetails.from_body(body, status=status)
    note = "" if waited is None else f" (still busy after {waited:.1f} s; busy_timeout={limit:g} s)"
    return DirectoryError(
        f"{method} {url} answered {status}: {problem.message}{note}",
        status=status,
        problem=problem.to_dict(),
        waited=waited,
    )


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP-date), None
    without a usable one. At least 0.1 s: a busy directory is not asked again at once."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return max(0.1, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 9110 dates are GMT anyway
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.1, when.timestamp() - time.time())


def _id_from_location(location: str) -> str:
    from urllib.parse import unquote

    return unquote(location.rsplit("/things/", 1)[-1])


def _next_link(headers: Mapping[str, str]) -> str | None:
    for value in headers.getall("Link", []) if hasattr(headers, "getall") else [headers.get("Link", "")]:
        for link in value.split(","):
            target, _, params = link.partition(";")
            if 'rel="next"' in params.replace(" ", ""):
                return target.strip().strip("<>")
    return None
