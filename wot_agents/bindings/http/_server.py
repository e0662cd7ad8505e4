"""The HTTP binding, server side: one route table registers the handlers and writes the forms.

Per the W3C HTTP binding template: properties are read with GET and written with PUT,
actions invoked with POST (the reply carries the output), property observation and events
are Server-Sent Events (``"subprotocol": "sse"``). Actions declared ``synchronous: false``, or
invoked with ``Prefer: respond-async``, answer ``201 Created`` with the URL of an action
status resource (GET it for ``{"status": ..., "output": ...}``, DELETE it to cancel).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..._model import Form, InteractionAffordance
from ..._problem import HTTPProblem
from ..._sse import EventStream
from .._interfaces import ServeContext
from .._vocabulary import CONTENT_TYPE, SSE_SUBPROTOCOL, Kind, Op, decode_request
from .._web import json_response

__all__ = ["HttpBinding"]

#: Seconds between SSE comments on an idle stream.
HEARTBEAT = 15.0


@dataclass(frozen=True, slots=True)
class _Route:
    """One row of the table: an HTTP endpoint and the form that advertises it."""

    kind: Kind | None  # None: a thing-level form (e.g. readallproperties)
    ops: tuple[Op, ...]
    method: str
    path: str  # below the agent's root; ``{name}`` is the affordance name
    handler: str  # method name on HttpBinding
    subprotocol: str | None = None
    applies: Callable[[Any], bool] = lambda affordance: True
    advertised: bool = True


def _writable(affordance: Any) -> bool:
    return not affordance.read_only


def _readable(affordance: Any) -> bool:
    return not affordance.write_only


def _observable(affordance: Any) -> bool:
    return bool(affordance.observable)


ROUTES: tuple[_Route, ...] = (
    _Route("property", ("readproperty",), "GET", "/properties/{name}", "read_property", applies=_readable),
    _Route("property", ("writeproperty",), "PUT", "/properties/{name}", "write_property", applies=_writable),
    _Route(
        "property",
        ("observeproperty", "unobserveproperty"),
        "GET",
        "/properties/{name}/observation",
        "observe_property",
        subprotocol=SSE_SUBPROTOCOL,
        applies=_observable,
    ),
    _Route("action", ("invokeaction",), "POST", "/actions/{name}", "invoke_action"),
    _Route(
        "action", ("queryaction",), "GET", "/actions/{name}/{invocation}", "query_action", advertised=False
    ),
    _Route(
        "action",
        ("cancelaction",),
        "DELETE",
        "/actions/{name}/{invocation}",
        "cancel_action",
        advertised=False,
    ),
    _Route(
        "event",
        ("subscribeevent", "unsubscribeevent"),
        "GET",
        "/events/{name}",
        "subscribe_event",
        subprotocol=SSE_SUBPROTOCOL,
    ),
    _Route(None, ("readallproperties",), "GET", "/properties", "read_all_properties"),
)


class _Invocations:
    """Action invocations running in the background, bounded; the oldest finished ones go first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[str, asyncio.Task[Any]] = OrderedDict()

    def start(self, coro: Any) -> str:
        if len(self._items) >= self.limit:
            finished = next((key for key, task in self._items.items() if task.done()), None)
            if finished is None:
                coro.close()
                raise web.HTTPServiceUnavailable(text=f"{self.limit} action invocations are already running")
            del self._items[finished]
        key = uuid.uuid4().hex
        self._items[key] = asyncio.ensure_future(coro)
        return key

    def status(self, key: str) -> dict[str, Any]:
        task = self._items.get(key)
        if task is None:
            raise web.HTTPNotFound(text=f"no action invocation {key!r}")
        if not task.done():
            return {"status": "pending"}
        if task.cancelled():
            return {"status": "cancelled"}
        error = task.exception()
        if error is not None:
            return {"status": "failed", "error": {"title": type(error).__name__, "detail": str(error)}}
        return {"status": "completed", "output": task.result()}

    def cancel(self, key: str) -> None:
        task = self._items.get(key)
        if task is None:
            raise web.HTTPNotFound(text=f"no action invocation {key!r}")
        task.cancel()

    async def aclose(self) -> None:
        tasks = list(self._items.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._items.clear()


class HttpBinding:
    """Serves an agent's affordances over HTTP inside the shared app (see ``WebServer``)."""

    kind = "http"

    def __init__(self, *, max_invocations: int = 1000) -> None:
        self._context: ServeContext | None = None
        self._url: Callable[[str], str] | None = None
        self._invocations = _Invocations(max_invocations)
        self._streams: set[EventStream] = set()

    def base(self, http_base: str) -> str:
        return http_base

    # --- forms ----------------------------------------------------------------------------------

    def _root(self) -> str:
        assert self._context is not None and self._url is not None, "install() first"
        return self._url(f"/{self._context.slug}")

    def _affordance(self, kind: Kind, name: str) -> InteractionAffordance | None:
        assert self._context is not None
        agent = self._context.agent
        table: Any = {"property": agent.properties, "action": agent.actions, "event": agent.events}[kind]
        exposed = table.get(name)
        return exposed.affordance if exposed is not None else None

    def _form(self, route: _Route, name: str | None) -> Form:
        path = route.path.format(name=name) if name is not None else route.path
        extra = {"subprotocol": route.subprotocol} if route.subprotocol else {}
        op: str | list[str] = route.ops[0] if len(route.ops) == 1 else list(route.ops)
        return Form(
            href=self._root() + path, op=op, content_type=CONTENT_TYPE, method_name=route.method, **extra
        )

    def forms(self, kind: Kind, name: str) -> list[Form]:
        affordance = self._affordance(kind, name)
        if affordance is None:
            return []
        return [
            self._form(route, name)
            for route in ROUTES
            if route.kind == kind and route.advertised and route.applies(affordance)
        ]

    def thing_forms(self) -> list[Form]:
        assert self._context is not None
        if not self._context.agent.properties:
            return []
        return [self._form(route, None) for route in ROUTES if route.kind is None]

    # --- serving --------------------------------------------------------------------------------

    def install(self, app: web.Application, context: ServeContext, url: Callable[[str], str]) -> None:
        self._context, self._url = context, url
        for route in ROUTES:
            handler = getattr(self, route.handler)
            app.router.add_route(route.method, f"/{context.slug}{route.path}", handler)

    async def aclose(self) -> None:
        for stream in list(self._streams):
            stream.close()
        await self._invocations.aclose()

    def _exposed(self, kind: Kind, request: web.Request) -> Any:
        assert self._context is not None
        agent = self._context.agent
        table: Any = {"property": agent.properties, "action": agent.actions, "event": agent.events}[kind]
        name = request.match_info["name"]
        exposed = table.get(name)
        if exposed is None:
            raise web.HTTPNotFound(text=f"the agent has no {kind} {name!r}")
        return exposed

    async def _body(self, request: web.Request) -> Any:
        return decode_request(await request.read(), request.headers.get("Content-Type"))

    async def read_property(self, request: web.Request) -> web.StreamResponse:
        prop = self._exposed("property", request)
        if prop.affordance.write_only:
            raise HTTPProblem(405, f"property {request.match_info['name']!r} is write-only")
        return json_response(await prop.read())

    async def write_property(self, request: web.Request) -> web.StreamResponse:
        prop = self._exposed("property", request)
        if prop.affordance.read_only:
            raise HTTPProblem(405, f"property {request.match_info['name']!r} is read-only")
        await prop.write(await self._body(request))
        return web.Response(status=204)

    async def read_all_properties(self, request: web.Request) -> web.StreamResponse:
        assert self._context is not None
        values = {
            name: await prop.read()
            for name, prop in self._context.agent.properties.items()
            if not prop.affordance.write_only
        }
        return json_response(values)

    async def invoke_action(self, request: web.Request) -> web.StreamResponse:
        action = self._exposed("action", request)
        value = await self._body(request)
        wants_async = "respond-async" in request.headers.get("Prefer", "")
        if action.affordance.synchronous is False or wants_async:
            key = self._invocations.start(action.invoke(value))
            location = f"{request.path}/{key}"
            response = json_response({"status": "pending", "href": location}, status=201)
            response.headers["Location"] = location
            return response
        output = await action.invoke(value)
        return web.Response(status=204) if output is None else json_response(output)

    async def query_action(self, request: web.Request) -> web.StreamResponse:
        self._exposed("action", request)
        return json_response(self._invocations.status(request.match_info["invocation"]))

    async def cancel_action(self, request: web.Request) -> web.StreamResponse:
        self._exposed("action", request)
        self._invocations.cancel(request.match_info["invocation"])
        return web.Response(status=204)

    async def observe_property(self, request: web.Request) -> web.StreamResponse:
        prop = self._exposed("property", request)
        if not prop.affordance.observable:
            raise HTTPProblem(405, f"property {request.match_info['name']!r} is not observable")
        return await self._sse(request, prop.observe())

    async def subscribe_event(self, request: web.Request) -> web.StreamResponse:
        return await self._sse(request, self._exposed("event", request).subscribe())

    async def _sse(self, request: web.Request, values: AsyncIterator[Any]) -> web.StreamResponse:
        """Stream ``values`` as Server-Sent Events until the client goes or the server stops."""
        stream = EventStream(request, keepalive=HEARTBEAT)
        self._streams.add(stream)
        try:
            await stream.open("subscribed")
            await stream.pipe(values, keepalive_comment="heartbeat")
        finally:
            self._streams.discard(stream)
        return stream.response
