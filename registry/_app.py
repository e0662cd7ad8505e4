"""The directory's HTTP API (WoT Discovery 7.3.2): app factory, thin handlers, lifecycle.

:class:`Directory` wires the pieces: the store publishes every committed change to the field
index, the RDF index and the event hub, in that order, whatever wrote it (API or TTL purge).
Handlers only parse the request, call the store or an index, and shape the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from wot_agents import validate

from ._config import DirectorySettings
from ._enrich import (
    DISCOVERY_CONTEXT,
    RegistrationError,
    anonymous_id,
    enrich,
    merge_diff,
    merge_patch,
    parse_time,
    retrieved_tail,
)
from ._events import EventHub
from ._index import SORT_KEYS, FieldIndex, filter_from_query, parse_filter
from ._json import dumps, loads
from ._jsonpath import JsonPathQuery
from ._language import localize
from ._problems import Handler, HTTPProblem, problem_middleware, validation_problem
from ._rdf import RdfIndex
from ._store import Record, SQLiteStore
from ._td import directory_td

__all__ = ["DIRECTORY", "Directory", "create_app"]

logger = logging.getLogger("registry")

TD_JSON = "application/td+json"
LD_JSON = "application/ld+json"
EMPTY = "application/x-empty"
_WRITE_TYPES = (TD_JSON, "application/json", LD_JSON)
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`\x00-\x1f\x7f]*$")


class Directory:
    """The directory's state: store, indexes, event hub and the purge task."""

    def __init__(self, settings: DirectorySettings) -> None:
        self.settings = settings
        self.store = SQLiteStore(settings.db, journal_size=settings.journal_size)
        self.fields = FieldIndex()
        self.store.subscribe(self.fields.apply)
        rdf_path = Path(f"{settings.db}.rdf") if settings.db is not None else None
        self.rdf = RdfIndex(
            self.store,
            rdf_path,
            query_timeout=settings.query_timeout,
            result_cap=settings.result_cap,
            allow_federation=settings.allow_federation,
        )
        self.events = EventHub(
            self.store, queue_size=settings.event_queue, write_timeout=settings.event_write_timeout
        )
        self._purge_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Directory:
        await self.store.open()
        self.fields.load(self.store)
        await self.rdf.start()
        self._purge_task = asyncio.create_task(self._purge_loop(), name="wot-directory-purge")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the purge, end event streams, close the indexes and the store; idempotent."""
        if self._purge_task is not None:
            self._purge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purge_task
            self._purge_task = None
        self.events.close()
        await self.rdf.aclose()
        await self.store.aclose()

    async def purge(self) -> int:
        """Delete every expired registration (7.3.1.2); returns how many."""
        expired = await self.store.expired(time.time())
        for thing_id in expired:
            await self.store.delete(thing_id)
        if expired:
            logger.info("purged %d expired descriptions", len(expired))
        return len(expired)

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.purge_interval)
            try:
                await self.purge()
            except Exception:
                logger.exception("purging expired descriptions failed")

    def live(self, thing_id: str, now: float) -> Record | None:
        record = self.store.get(thing_id)
        if record is None or (record.expires is not None and record.expires <= now):
            return None  # an expired registration is gone for readers even before the purge
        return record


DIRECTORY: web.AppKey[Directory] = web.AppKey("directory", Directory)


# -- helpers ----------------------------------------------------------------------------------
def _directory(request: web.Request) -> Directory:
    return request.app[DIRECTORY]


_OPEN_PATHS = frozenset({"/", "/.well-known/wot"})
_DATASET_PARAMETERS = ("default-graph-uri", "named-graph-uri")
_WRITES = frozenset({"PUT", "POST", "PATCH", "DELETE"})


@web.middleware
async def _read_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With ``protect_reads``, everything but the directory's TD needs the bearer token."""
    if request.path not in _OPEN_PATHS:
        _check_auth(request)
    return await handler(request)


def _check_auth(request: web.Request) -> None:
    token = _directory(request).settings.token
    if token is None:
        return
    given = request.headers.get("Authorization", "")
    if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode())):
        writing = request.method in _WRITES and not request.path.startswith("/search/")
        raise HTTPProblem(
            401,
            f"{'writing to' if writing else 'reading'} this directory needs a bearer token "
            "(Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": 'Bearer realm="wot-directory"'},
        )


def _thing_id(request: web.Request) -> str:
    thing_id = request.match_info["id"]
    limit = _directory(request).settings.max_id_length
    if len(thing_id) > limit:
        raise HTTPProblem(400, f"the id is {len(thing_id)} characters long; the limit is {limit}")
    if not _ID.match(thing_id):
        raise HTTPProblem(400, f"the id {thing_id!r} is not an absolute IRI (like urn:example:lamp-1)")
    return thing_id


async def _read_json(request: web.Request, types: tuple[str, ...]) -> Any:
    content_type = request.content_type
    # aiohttp reports a missing Content-Type as application/octet-stream; accept it as JSON.
    if content_type not in types and not (
        content_type == "application/octet-stream" and not request.headers.get("Content-Type")
    ):
        raise HTTPProblem(415, f"Content-Type {content_type} is not accepted here; use {types[0]}")
    body = await request.read()
    try:
        document = loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPProblem(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise HTTPProblem(400, "the body nests too deeply") from None
    if not isinstance(document, dict):
        raise HTTPProblem(400, f"the body must be a JSON object, not {type(document).__name__}")
    return document


def _check_valid(td: Mapping[str, Any]) -> None:
    problems = validate(td)
    if problems:
        raise validation_problem(problems)


def _location(thing_id: str) -> str:
    return "/things/" + quote(thing_id, safe=":@!$&'()*+,;=-._~")


async def _store_td(request: web.Request, thing_id: str, td: dict[str, Any], old: Record | None) -> bool:
    directory = _directory(request)
    _check_valid(td)
    now = time.time()
    old_doc = old.document() if old is not None else None
    created_at = parse_time(old_doc.get("registration", {}).get("created")) if old_doc is not None else None
    try:
        enriched, expires = enrich(td, now=now, created=created_at, max_ttl=directory.settings.max_ttl)
    except RegistrationError as exc:
        raise HTTPProblem(400, str(exc)) from None
    record = Record(thing_id, dumps(enriched), expires)
    diff = enriched if old_doc is None else {**merge_diff(old_doc, enriched), "id": thing_id}
    await directory.store.put(record, diff, created=old is None)
    return old is None


def _no_content(status: int, created: str | None = None) -> web.Response:
    """A bodiless write answer, typed as the directory's own TD says (``application/x-empty``).

    TD consumers such as node-wot check the response's Content-Type against the form's
    ``response.contentType``; 7.3.2.4 suggests ``application/x-empty`` for these empty bodies.
    """
    headers = {"Content-Type": EMPTY}
    if created is not None:
        headers["Location"] = _location(created)  # 7.3.2.1.1: the URI of the created TD resource
    return web.Response(status=status, headers=headers)


def _int_arg(query: Mapping[str, str], name: str, default: int | None, *, minimum: int) -> int | None:
    if name not in query:
        return default
    try:
        value = int(query[name])
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise HTTPProblem(400, f"{name} must be an integer >= {minimum}, not {query[name]!r}")
    return value


def _members(directory: Directory, ids: Iterable[str], now: float) -> bytes:
    """The JSON array of the live descriptions among ``ids``, spliced from their stored text.

    Views (not copies) of each stored text are joined, so the page is copied once.
    """
    tail = retrieved_tail(now)
    parts: list[bytes | memoryview] = [b"["]
    for thing_id in ids:
        record = directory.live(thing_id, now)
        if record is not None:
            parts += (memoryview(record.data)[:-2], tail, b",")
    if len(parts) > 1:
        parts.pop()
    parts.append(b"]")
    return b"".join(parts)


def _link(path: str, args: Mapping[str, Any]) -> str:
    return f"{path}?{urlencode(args)}" if args else path


def _paging(query: Mapping[str, str], default_format: str) -> dict[str, Any]:
    fmt = query.get("format", default_format)
    if fmt not in ("array", "collection"):
        raise HTTPProblem(400, f"format must be array or collection, not {fmt!r}")
    offset = _int_arg(query, "offset", 0, minimum=0) or 0
    return {"fmt": fmt, "offset": offset, "limit": _int_arg(query, "limit", None, minimum=1)}


def _page(
    directory: Directory,
    ids: list[str],
    *,
    path: str,
    extra: Mapping[str, Any],
    etag: str | None,
    fmt: str,
    offset: int,
    limit: int | None,
) -> web.Response:
    """A page of descriptions, as an array or a ThingCollection, with the Link headers of 7.3.2.1.5."""
    page_size = min(limit or directory.settings.max_page, directory.settings.max_page)
    paged = limit is not None or offset > 0 or len(ids) > page_size
    now = time.time()
    chosen = ids[offset : offset + page_size]
    members = _members(directory, chosen, now)
    more = offset + page_size < len(ids)
    args = dict(extra)
    if fmt == "collection":
        args["format"] = "collection"
    # 7.3.2.1.5: the next link carries the client's own limit (the page may be shorter when it
    # is above max_page); without one, the page size the server chose.
    next_args = {**args, "offset": offset + page_size, "limit": limit or page_size}
    headers: dict[str, str] = {}
    links = []
    if more:
        links.append(f'<{_link(path, next_args)}>; rel="next"')
    if paged:
        links.append(f'<{_link(path, extra)}>; rel="canonical"' + (f'; etag="{etag}"' if etag else ""))
    if links:
        headers["Link"] = ", ".join(links)
    if fmt == "array":
        return web.Response(body=members, content_type=LD_JSON, headers=headers)
    head = {
        "@context": DISCOVERY_CONTEXT,
        "@type": "ThingCollection",
        "total": len(ids),
        "@id": _link(path, {**args, "offset": offset, **({"limit": limit} if limit else {})}),
    }
    if more:
        head["next"] = _link(path, next_args)
    body = dumps(head)[:-1] + b',"members":' + members + b"}"
    return web.Response(body=body, content_type=LD_JSON, headers=headers)


# -- handlers ---------------------------------------------------------------------------------
async def own_td(request: web.Request) -> web.Response:
    directory = _directory(request)
    base = f"{request.scheme}://{request.host}/"
    settings = directory.settings
    td = directory_td(
        base,
        protected_writes=settings.token is not None,
        protected_reads=settings.protect_reads,
        title="wot-agents directory",
    )
    return web.Response(body=dumps(td), content_type=TD_JSON)


async def events(request: web.Request) -> web.StreamResponse:
    return await _directory(request).events.handle(request)


async def openapi(request: web.Request) -> web.Response:
    text = files("registry").joinpath("openapi.json").read_bytes()
    return web.Response(body=text, content_type="application/json")


async def list_things(request: web.Request) -> web.Response:
    directory = _directory(request)
    paging = _paging(request.query, "array")
    return _page(
        directory,
        directory.store.ids(),
        path="/things",
        extra={},
        etag=str(directory.store.revision),
        **paging,
    )


async def create_anonymous(request: web.Request) -> web.Response:
    _check_auth(request)
    td = await _read_json(request, _WRITE_TYPES)
    if "id" in td:
        raise HTTPProblem(
            400, "this TD has an id: register it with PUT /things/{id}; POST /things is for Anonymous TDs"
        )
    thing_id = anonymous_id()
    td["id"] = thing_id
    await _store_td(request, thing_id, td, None)
    return _no_content(201, thing_id)


async def put_thing(request: web.Request) -> web.Response:
    _check_auth(request)
    thing_id = _thing_id(request)
    td = await _read_json(request, _WRITE_TYPES)
    body_id = td.setdefault("id", thing_id)
    if body_id != thing_id:
        raise HTTPProblem(400, f"the TD's id {body_id!r} differs from the id in the URL {thing_id!r}")
    old = _directory(request).live(thing_id, time.time())
    if await _store_td(request, thing_id, td, old):
        return _no_content(201, thing_id)
    return _no_content(204)


async def patch_thing(request: web.Request) -> web.Response:
    _check_auth(request)
    thing_id = _thing_id(request)
    patch = await _read_json(request, ("application/merge-patch+json",))
    old = _directory(request).live(thing_id, time.time())
    if old is None:
        raise HTTPProblem(404, f"no Thing Description with id {thing_id!r}")
    merged = merge_patch(old.document(), patch)
    if merged.get("id") != thing_id:
        raise HTTPProblem(400, "a merge patch cannot change or remove the id")
    await _store_td(request, thing_id, merged, old)
    return _no_content(204)


async def get_thing(request: web.Request) -> web.Response:
    thing_id = request.match_info["id"]
    now = time.time()
    record = _directory(request).live(thing_id, now)
    if record is None:
        raise HTTPProblem(404, f"no Thing Description with id {thing_id!r}")
    data = record.data
    headers = {"Vary": "Accept-Language"}
    wanted = request.headers.get("Accept-Language")
    # Only TDs carrying translations can change language: the others are sent without parsing.
    if wanted and (b'"titles"' in data or b'"descriptions"' in data):
        localized = localize(record.document(), wanted)
        if localized is not None:
            headers["Content-Language"], td = localized
            td["registration"] = td.pop("registration")  # last again, for retrieved_tail()
            data = dumps(td)
    return web.Response(body=data[:-2] + retrieved_tail(now), content_type=TD_JSON, headers=headers)


async def delete_thing(request: web.Request) -> web.Response:
    _check_auth(request)
    thing_id = request.match_info["id"]
    directory = _directory(request)
    if directory.live(thing_id, time.time()) is None or await directory.store.delete(thing_id) is None:
        raise HTTPProblem(404, f"no Thing Description with id {thing_id!r}")
    return _no_content(204)


async def search_jsonpath(request: web.Request) -> web.Response:
    directory = _directory(request)
    settings = directory.settings
    query = JsonPathQuery(
        request.query.get("query", ""), result_cap=settings.result_cap, timeout=settings.query_timeout
    )
    ids: Iterable[str] = directory.store.ids()
    if query.terms is not None:
        candidates = set.intersection(*(directory.fields.with_member(k, v) for k, v in query.terms))
        ids = sorted(candidates)
    now = time.time()
    records = [r for r in (directory.live(i, now) for i in ids) if r is not None]
    loaders = [r.document for r in records]
    if len(loaders) > 64:  # a scan: off the event loop, within the time limit
        try:
            values = await asyncio.wait_for(
                asyncio.to_thread(query.evaluate, loaders), settings.query_timeout
            )
        except TimeoutError:
            raise query.too_slow() from None
    else:
        values = query.evaluate(loaders)
    return web.Response(body=dumps(values), content_type="application/json")


async def search_sparql(request: web.Request) -> web.Response:
    given: Mapping[str, Any] = request.query
    text: object  # a form field may be a file: checked below
    if request.method == "POST":
        if request.content_type == "application/sparql-query":
            text = await request.text()
        elif request.content_type == "application/x-www-form-urlencoded":
            given = await request.post()
            text = given.get("query", "")
        else:
            raise HTTPProblem(
                415,
                "POST a query as application/sparql-query or application/x-www-form-urlencoded (query=...)",
            )
    else:
        text = request.query.get("query", "")
    if not isinstance(text, str) or not text.strip():
        raise HTTPProblem(400, "no SPARQL query given (the query parameter)")
    if any(name in given or name in request.query for name in _DATASET_PARAMETERS):
        # SPARQL 1.1 Protocol datasets: not offered, and ignoring them would answer another
        # question than the one asked (7.3.2: an unsupported customization is 400 or 501).
        raise HTTPProblem(
            501,
            "default-graph-uri and named-graph-uri are not supported; name the graphs in the query "
            "(FROM, FROM NAMED, GRAPH): each TD is the named graph of its id",
        )
    body, content_type = await _directory(request).rdf.query(text, request.headers.get("Accept", ""))
    return web.Response(body=body, content_type=content_type)


async def search_filter(request: web.Request) -> web.Response:
    directory = _directory(request)
    if request.method == "POST":
        spec = await _read_json(request, ("application/json",))
        expr = parse_filter(spec["filter"]) if "filter" in spec else None
        sort = spec.get("sort", [])
        if isinstance(sort, str):
            sort = [sort]
        unknown = set(spec) - {"filter", "sort", "limit", "offset", "format"}
        if unknown:
            raise HTTPProblem(
                400, f"unknown members {sorted(unknown)}; use filter, sort, limit, offset, format"
            )
        paging = _paging({k: str(spec[k]) for k in ("limit", "offset", "format") if k in spec}, "collection")
        extra: dict[str, Any] = {}
    else:
        expr = filter_from_query(request.query)
        sort = [s for s in request.query.get("sort", "").split(",") if s]
        paging = _paging(request.query, "collection")
        extra = {k: v for k, v in request.query.items() if k not in ("limit", "offset", "format")}
    for key in sort:
        if not isinstance(key, str) or key.lstrip("-") not in SORT_KEYS:
            raise HTTPProblem(
                400, f"cannot sort by {key!r}; sort by {', '.join(SORT_KEYS)} (prefix - to reverse)"
            )
    ids = directory.fields.search(expr) if expr is not None else directory.store.ids()
    ordered = directory.fields.sort(ids, sort) if sort else sorted(ids)
    return _page(
        directory, ordered, path="/search/filter", extra=extra, etag=str(directory.store.revision), **paging
    )


# -- the app ----------------------------------------------------------------------------------
def create_app(settings: DirectorySettings | None = None, **overrides: Any) -> web.Application:
    """The directory as an aiohttp application; the directory opens and closes with the app.

    Pass a :class:`DirectorySettings`, or its fields as keyword arguments.
    """
    if settings is None:
        settings = DirectorySettings(**overrides)
    middlewares = [problem_middleware, _read_guard] if settings.protect_reads else [problem_middleware]
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body)

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        async with Directory(settings) as directory:
            app[DIRECTORY] = directory
            yield

    async def end_streams(app: web.Application) -> None:
        app[DIRECTORY].events.close()

    app.cleanup_ctx.append(lifespan)
    app.on_shutdown.append(end_streams)
    app.router.add_get("/", own_td)
    app.router.add_get("/.well-known/wot", own_td)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/things", list_things)
    app.router.add_post("/things", create_anonymous)
    app.router.add_get("/things/{id:.+}", get_thing)
    app.router.add_put("/things/{id:.+}", put_thing)
    app.router.add_patch("/things/{id:.+}", patch_thing)
    app.router.add_delete("/things/{id:.+}", delete_thing)
    app.router.add_get("/events", events)
    app.router.add_get("/events/{type}", events)
    app.router.add_get("/search/jsonpath", search_jsonpath)
    app.router.add_get("/search/sparql", search_sparql)
    app.router.add_post("/search/sparql", search_sparql)
    app.router.add_get("/search/filter", search_filter)
    app.router.add_post("/search/filter", search_filter)
    return app
