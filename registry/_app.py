"""The directory's HTTP API (WoT Discovery 7.3.2): app factory, route table, thin handlers.

Handlers parse the request, call the :class:`~registry.Directory` service and shape the answer;
the service owns the write path. Which requests need the bearer token is declared once, in the
route table (:data:`_ROUTES`), and enforced by one middleware.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from importlib.resources import files
from typing import Any, Literal
from urllib.parse import quote, urlencode

from aiohttp import web

from wot_agents import Problem

from ._backend import Store
from ._config import DirectorySettings
from ._directory import Directory
from ._enrich import DISCOVERY_CONTEXT, retrieved_tail
from ._explorer import EXPLORER_ROUTES, negotiated_root
from ._index import filter_from_query, parse_filter
from ._json import MAX_DEPTH, DuplicateMembers, JSONLimitError, dumps, loads
from ._language import localize
from ._problems import Handler, HTTPProblem, problem_middleware, validation_problem
from ._td import directory_td

__all__ = ["DIRECTORY", "create_app"]

logger = logging.getLogger("registry")

TD_JSON = "application/td+json"
LD_JSON = "application/ld+json"
EMPTY = "application/x-empty"
_WRITE_TYPES = (TD_JSON, "application/json", LD_JSON)

_REPEATED = "this member name appears more than once in its object (RFC 8259 4); only one would be kept"

DIRECTORY: web.AppKey[Directory] = web.AppKey("directory", Directory)


# -- helpers ----------------------------------------------------------------------------------
def _directory(request: web.Request) -> Directory:
    return request.app[DIRECTORY]


_DATASET_PARAMETERS = ("default-graph-uri", "named-graph-uri")

#: Who may send a request: anyone; readers (the token when ``protect_reads``); writers (the token
#: whenever one is set).
Access = Literal["open", "read", "write"]
_ACCESS: web.AppKey[dict[Handler, Access]] = web.AppKey("access", dict)


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place that checks the bearer token, as the route table says for each handler.

    Unknown routes (404, 405) count as reads: with ``protect_reads`` an anonymous client learns
    nothing about the API but the directory's own TD.
    """
    settings = _directory(request).settings
    token = settings.token
    if token is not None:
        access = request.app[_ACCESS].get(request.match_info.handler, "read")
        if access == "write" or (access == "read" and settings.protect_reads):
            # RFC 9110 11.1: the scheme is case-insensitive (and one or more spaces may follow it).
            scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
            if not (
                scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
            ):
                raise HTTPProblem(
                    401,
                    f"{'writing to' if access == 'write' else 'reading'} this directory needs a bearer "
                    "token (Authorization: Bearer <token>)",
                    headers={"WWW-Authenticate": 'Bearer realm="wot-directory"'},
                )
    return await handler(request)


def _thing_id(request: web.Request) -> str:
    thing_id = request.match_info["id"]
    _directory(request).check_id(thing_id)  # before the body is read
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
        document = loads(body, max_depth=MAX_DEPTH)
    except DuplicateMembers as exc:
        raise validation_problem([Problem(pointer, _REPEATED) for pointer in exc.pointers]) from None
    except JSONLimitError as exc:
        raise HTTPProblem(400, f"the body is not accepted: {exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPProblem(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise HTTPProblem(400, f"the body must be a JSON object, not {type(document).__name__}")
    return document


def _location(thing_id: str) -> str:
    return "/things/" + quote(thing_id, safe=":@!$&'()*+,;=-._~")


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
    for record in directory.records(ids, now=now):
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
    ids: Sequence[str],
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
    return _page(directory, directory.ids(), path="/things", extra={}, etag=str(directory.revision), **paging)


async def create_anonymous(request: web.Request) -> web.Response:
    td = await _read_json(request, _WRITE_TYPES)
    change = await _directory(request).create(td)
    return _no_content(201, change.id)


async def put_thing(request: web.Request) -> web.Response:
    thing_id = _thing_id(request)
    td = await _read_json(request, _WRITE_TYPES)
    change = await _directory(request).put(thing_id, td)
    return _no_content(201, thing_id) if change.kind == "thing_created" else _no_content(204)


async def patch_thing(request: web.Request) -> web.Response:
    thing_id = _thing_id(request)
    patch = await _read_json(request, ("application/merge-patch+json",))
    await _directory(request).patch(thing_id, patch)
    return _no_content(204)


async def get_thing(request: web.Request) -> web.Response:
    thing_id = request.match_info["id"]
    now = time.time()
    record = _directory(request).get(thing_id, now=now)
    if record is None:
        raise HTTPProblem(404, f"no Thing Description with id {thing_id!r}")
    data = record.data
    headers = {"Vary": "Accept-Language"}
    wanted = request.headers.get("Accept-Language")
    # Only TDs carrying translations can change language: the others are sent without parsing.
    # A signed TD is sent as signed: another language would not verify.
    if wanted and (b'"titles"' in data or b'"descriptions"' in data) and b'"signatures"' not in data:
        localized = localize(record.document(), wanted)
        if localized is not None:
            headers["Content-Language"], td = localized
            td["registration"] = td.pop("registration")  # last again, for retrieved_tail()
            data = dumps(td)
    return web.Response(body=data[:-2] + retrieved_tail(now), content_type=TD_JSON, headers=headers)


async def delete_thing(request: web.Request) -> web.Response:
    thing_id = request.match_info["id"]
    if await _directory(request).delete(thing_id) is None:
        raise HTTPProblem(404, f"no Thing Description with id {thing_id!r}")
    return _no_content(204)


async def search_jsonpath(request: web.Request) -> web.Response:
    values = await _directory(request).search_jsonpath(request.query.get("query", ""))
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
    body, content_type = await _directory(request).search_sparql(text, request.headers.get("Accept", ""))
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
    if not isinstance(sort, list):
        raise HTTPProblem(400, f"sort must be a key or an array of keys, not {sort!r}")
    ordered = directory.search(expr, sort)
    return _page(
        directory, ordered, path="/search/filter", extra=extra, etag=str(directory.revision), **paging
    )


async def list_groups(request: web.Request) -> web.Response:
    return await _directory(request).groups.list(request)


async def group_events(request: web.Request) -> web.StreamResponse:
    return await _directory(request).groups.events(request)


async def get_group(request: web.Request) -> web.Response:
    return await _directory(request).groups.get(request)


async def put_group(request: web.Request) -> web.Response:
    return await _directory(request).groups.put(request)


async def delete_group(request: web.Request) -> web.Response:
    return await _directory(request).groups.delete(request)


async def group_credential(request: web.Request) -> web.Response:
    return await _directory(request).groups.credential(request)


# -- the app ----------------------------------------------------------------------------------
#: Every route: method, path, handler, and who may call it. GET routes answer HEAD too.
_ROUTES: tuple[tuple[str, str, Handler, Access], ...] = (
    ("GET", "/", negotiated_root(own_td), "open"),  # a browser asking for HTML gets the explorer
    ("GET", "/.well-known/wot", own_td, "open"),
    ("GET", "/openapi.json", openapi, "read"),
    ("GET", "/things", list_things, "read"),
    ("POST", "/things", create_anonymous, "write"),
    ("GET", "/things/{id:.+}", get_thing, "read"),
    ("PUT", "/things/{id:.+}", put_thing, "write"),
    ("PATCH", "/things/{id:.+}", patch_thing, "write"),
    ("DELETE", "/things/{id:.+}", delete_thing, "write"),
    ("GET", "/events", events, "read"),
    ("GET", "/events/{type}", events, "read"),
    ("GET", "/search/jsonpath", search_jsonpath, "read"),
    ("GET", "/search/sparql", search_sparql, "read"),
    ("POST", "/search/sparql", search_sparql, "read"),
    ("GET", "/search/filter", search_filter, "read"),
    ("POST", "/search/filter", search_filter, "read"),
    # Agent groups: every request also carries its caller's proof (registry/_groups.py).
    ("GET", "/groups", list_groups, "read"),
    ("GET", "/groups/events", group_events, "read"),
    ("GET", "/groups/{name}", get_group, "read"),
    ("PUT", "/groups/{name}", put_group, "read"),
    ("DELETE", "/groups/{name}", delete_group, "read"),
    ("POST", "/groups/{name}/credentials", group_credential, "read"),
    *EXPLORER_ROUTES,
)


def create_app(
    settings: DirectorySettings | None = None, *, store: Store | None = None, **overrides: Any
) -> web.Application:
    """The directory as an aiohttp application; the directory opens and closes with the app.

    Pass a :class:`DirectorySettings`, or its fields as keyword arguments. ``store`` replaces
    the default :class:`~registry.SQLiteStore` on ``settings.db`` (the app then owns it).
    """
    if settings is None:
        settings = DirectorySettings(**overrides)
    app = web.Application(
        middlewares=[problem_middleware, _auth_middleware], client_max_size=settings.max_body
    )
    access: dict[Handler, Access] = {}
    for method, path, handler, who in _ROUTES:
        app.router.add_route(method, path, handler)
        if method == "GET":
            app.router.add_route("HEAD", path, handler)
        if access.setdefault(handler, who) != who:
            raise AssertionError(f"{handler.__name__} is declared both {access[handler]} and {who}")
    app[_ACCESS] = access

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        async with Directory(settings, store=store) as directory:
            app[DIRECTORY] = directory
            yield

    async def end_streams(app: web.Application) -> None:
        app[DIRECTORY].events.close()
        app[DIRECTORY].groups.close()

    app.cleanup_ctx.append(lifespan)
    app.on_shutdown.append(end_streams)
    return app
