"""The LMOS WebSocket binding, server side, inside the shared aiohttp app.

One endpoint per agent (``/{slug}/ws``, subprotocol ``lmosprotocol``) carries every
affordance; each form lists the operations its affordance supports there. Each request is
handled in its own task, so one slow action does not hold up the others on the connection;
replies and stream messages carry the request's ``correlationID``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import WSMsgType, web

from ..._errors import WotAgentsError
from ..._model import Form
from ..._problem import HTTPProblem, ProblemDetails
from ..._trace import continue_trace
from .._interfaces import ServeContext
from .._vocabulary import CONTENT_TYPE, LMOS_SUBPROTOCOL, Kind
from ._messages import REQUEST_TYPES, correlation_of, decode, encode, error_message, member, message, now

__all__ = ["WebSocketBinding"]

log = logging.getLogger("wot_agents.bindings")


class _Connection:
    """One client connection: its in-flight requests and open streams, all cancelled at the end."""

    def __init__(
        self, ws: web.WebSocketResponse, context: ServeContext, max_in_flight: int, max_streams: int = 100
    ) -> None:
        self.max_streams = max_streams
        self.ws = ws
        self.context = context
        self.thing_id = context.thing_id
        self.tasks: set[asyncio.Task[None]] = set()
        self.invocations: dict[str, tuple[str, asyncio.Future[Any]]] = {}
        self.streams: dict[str, tuple[str, str, asyncio.Task[None]]] = {}  # correlation -> (kind, name, task)
        self.slots = asyncio.Semaphore(max_in_flight)

    async def send(self, data: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(encode(data))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    # --- dispatch --------------------------------------------------------------------------------

    async def handle(self, text: str) -> None:
        try:
            data = decode(text)
        except ValueError as exc:
            await self.fail(HTTPProblem(400, f"not an LMOS message: {exc}"), correlation=None)
            return
        correlation = correlation_of(data)
        kind = data["messageType"]
        if kind not in REQUEST_TYPES:
            await self.fail(HTTPProblem(400, f"{kind!r} is not a request message type"), correlation)
            return
        # Each message carries its own trace (the envelope's traceparent/tracestate): one
        # connection serves many callers' turns, so the upgrade request's trace is not theirs.
        async with self.slots:
            try:
                with continue_trace(data.get("traceparent"), data.get("tracestate")):
                    await getattr(self, "on_" + REQUEST_TYPES[kind])(data, correlation)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not isinstance(exc, WotAgentsError):
                    log.exception("LMOS %s failed", kind)
                await self.fail(exc, correlation)

    async def fail(self, exc: Exception, correlation: str | None) -> None:
        """Answer a request with an ``error`` message: the problem that ``exc`` maps to."""
        problem = ProblemDetails.from_exception(exc)
        await self.send(error_message(self.thing_id, problem, correlation_id=correlation))

    def _exposed(self, kind: Kind, data: dict[str, Any], key: str) -> Any:
        agent = self.context.agent
        table: Any = {"property": agent.properties, "action": agent.actions, "event": agent.events}[kind]
        name = data.get(key)
        exposed = table.get(name) if isinstance(name, str) else None
        if exposed is None:
            raise HTTPProblem(404, f"the agent has no {kind} {name!r}")
        return exposed

    def _reply(
        self, message_type: str, request: dict[str, Any], correlation: str | None, /, **body: Any
    ) -> dict[str, Any]:
        return message(message_type, self.thing_id, correlation_id=correlation, trace=request, **body)

    # --- actions ---------------------------------------------------------------------------------

    async def on_invokeaction(self, data: dict[str, Any], correlation: str | None) -> None:
        name = data.get("action")
        action = self._exposed("action", data, "action")
        key = correlation or ""
        task = asyncio.ensure_future(action.invoke(data.get("input")))
        self.invocations[key] = (str(name), task)
        try:
            output = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():
                task.cancel()
                raise
            await self.send(self._reply("actionStatus", data, correlation, action=name, status="cancelled"))
            return
        finally:
            self.invocations.pop(key, None)
        body = {"output": output} if output is not None else {}
        await self.send(
            self._reply("actionStatus", data, correlation, action=name, status="completed", **body)
        )

    async def on_queryaction(self, data: dict[str, Any], correlation: str | None) -> None:
        name = data.get("action")
        self._exposed("action", data, "action")
        running = correlation in self.invocations or any(n == name for n, _ in self.invocations.values())
        status = "pending" if running else "completed"
        await self.send(self._reply("actionStatus", data, correlation, action=name, status=status))

    async def on_cancelaction(self, data: dict[str, Any], correlation: str | None) -> None:
        name = data.get("action")
        self._exposed("action", data, "action")
        targets = [task for key, (n, task) in self.invocations.items() if key == correlation or n == name]
        if not targets:
            raise HTTPProblem(409, f"no invocation of {name!r} is running on this connection")
        for task in targets:
            task.cancel()

    # --- properties ------------------------------------------------------------------------------

    async def on_readproperty(self, data: dict[str, Any], correlation: str | None) -> None:
        prop = self._exposed("property", data, "name")
        if prop.affordance.write_only:
            raise HTTPProblem(405, f"property {data['name']!r} is write-only")
        value = await prop.read()
        await self.send(
            self._reply("propertyReading", data, correlation, name=data["name"], value=value, timestamp=now())
        )

    async def on_writeproperty(self, data: dict[str, Any], correlation: str | None) -> None:
        prop = self._exposed("property", data, "name")
        if prop.affordance.read_only:
            raise HTTPProblem(405, f"property {data['name']!r} is read-only")
        await prop.write(data.get("data"))
        await self.send(
            self._reply(
                "propertyReading",
                data,
                correlation,
                name=data["name"],
                value=data.get("data"),
                timestamp=now(),
            )
        )

    async def on_writemultipleproperties(self, data: dict[str, Any], correlation: str | None) -> None:
        values = data.get("data")
        if not isinstance(values, dict):
            raise HTTPProblem(400, "writeMultipleProperties needs an object 'data'")
        props = {name: self._exposed("property", {"name": name}, "name") for name in values}
        for name, prop in props.items():
            if prop.affordance.read_only:
                raise HTTPProblem(405, f"property {name!r} is read-only")
        for name, prop in props.items():
            await prop.write(values[name])
        await self.send(self._reply("propertyReadings", data, correlation, data=values, timestamp=now()))

    # --- streams ---------------------------------------------------------------------------------

    def _open(
        self,
        kind: str,
        name: str,
        correlation: str | None,
        values: AsyncIterator[Any],
        make: Callable[[Any], dict[str, Any]],
    ) -> None:
        key = correlation or f"{kind}:{name}"
        if key not in self.streams and len(self.streams) >= self.max_streams:
            # Each stream is a task and a fan-out target: a cap keeps one socket from costing
            # the agent memory and time for every event it emits.
            raise HTTPProblem(429, f"{self.max_streams} streams are open on this connection: close one first")

        async def pump() -> None:
            try:
                async for value in values:
                    await self.send(make(value))
            except (ConnectionError, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("LMOS %s stream %r failed", kind, name)
            finally:
                aclose = getattr(values, "aclose", None)
                if aclose is not None:
                    await aclose()
                self.streams.pop(key, None)

        if key in self.streams:
            self.streams[key][2].cancel()
        self.streams[key] = (kind, name, self.spawn(pump()))

    def _close(self, kind: str, name: str | None, correlation: str | None) -> None:
        for key, (k, n, task) in list(self.streams.items()):
            if k == kind and (
                key == correlation or (correlation not in self.streams and (name is None or n == name))
            ):
                task.cancel()

    async def on_observeproperty(self, data: dict[str, Any], correlation: str | None) -> None:
        prop = self._exposed("property", data, "name")
        name = data["name"]
        if not prop.affordance.observable:
            raise HTTPProblem(405, f"property {name!r} is not observable")
        self._open(
            "property",
            name,
            correlation,
            prop.observe(),
            lambda value: self._reply(
                "propertyReading", data, correlation, name=name, value=value, timestamp=now()
            ),
        )

    async def on_unobserveproperty(self, data: dict[str, Any], correlation: str | None) -> None:
        self._close("property", data.get("name"), member(data, "correlationID"))

    def _subscribe(self, name: str, data: dict[str, Any], correlation: str | None) -> None:
        event = self._exposed("event", {"event": name}, "event")
        self._open(
            "event",
            name,
            correlation,
            event.subscribe(),
            lambda value: self._reply("event", data, correlation, event=name, data=value, timestamp=now()),
        )

    async def on_subscribeevent(self, data: dict[str, Any], correlation: str | None) -> None:
        self._subscribe(data.get("event"), data, correlation)  # type: ignore[arg-type]

    async def on_unsubscribeevent(self, data: dict[str, Any], correlation: str | None) -> None:
        self._close("event", data.get("event"), member(data, "correlationID"))

    async def on_subscribeallevents(self, data: dict[str, Any], correlation: str | None) -> None:
        for name in self.context.agent.events:
            self._subscribe(name, data, None if correlation is None else f"{correlation}:{name}")

    async def on_unsubscribeallevents(self, data: dict[str, Any], correlation: str | None) -> None:
        self._close("event", None, None)


class WebSocketBinding:
    """Serves an agent over the LMOS WebSocket subprotocol inside the shared app."""

    kind = "ws"

    def __init__(
        self,
        *,
        max_message: int = 1024 * 1024,
        max_in_flight: int = 256,
        heartbeat: float = 30.0,
        max_streams: int = 100,
        max_connections: int = 256,
    ) -> None:
        self.max_message = max_message
        self.max_in_flight = max_in_flight
        #: Open observations and subscriptions per connection (429 beyond).
        self.max_streams = max_streams
        #: Open WebSocket connections to this agent (503 beyond), fewer than the web server's requests.
        self.max_connections = max_connections
        self.heartbeat = heartbeat
        self._context: ServeContext | None = None
        self._url: Callable[[str], str] | None = None
        self._sockets: set[web.WebSocketResponse] = set()

    def base(self, http_base: str) -> str:
        return "ws" + http_base.removeprefix("http")

    def path(self) -> str:
        assert self._context is not None
        return f"/{self._context.slug}/ws"

    def _href(self) -> str:
        assert self._url is not None
        return self.base(self._url(self.path()))

    def forms(self, kind: Kind, name: str) -> list[Form]:
        assert self._context is not None
        agent = self._context.agent
        ops: list[str] = []
        if kind == "property" and name in agent.properties:
            affordance = agent.properties[name].affordance
            ops += [] if affordance.write_only else ["readproperty"]
            ops += [] if affordance.read_only else ["writeproperty"]
            ops += ["observeproperty", "unobserveproperty"] if affordance.observable else []
        elif kind == "action" and name in agent.actions:
            ops = ["invokeaction", "queryaction", "cancelaction"]
        elif kind == "event" and name in agent.events:
            ops = ["subscribeevent", "unsubscribeevent"]
        if not ops:
            return []
        return [Form(href=self._href(), op=ops, subprotocol=LMOS_SUBPROTOCOL, content_type=CONTENT_TYPE)]

    def thing_forms(self) -> list[Form]:
        assert self._context is not None
        if not self._context.agent.events:
            return []
        ops = ["subscribeallevents", "unsubscribeallevents"]
        return [Form(href=self._href(), op=ops, subprotocol=LMOS_SUBPROTOCOL, content_type=CONTENT_TYPE)]

    def install(self, app: web.Application, context: ServeContext, url: Callable[[str], str]) -> None:
        self._context, self._url = context, url
        app.router.add_get(self.path(), self._handle)

    async def aclose(self) -> None:
        for ws in list(self._sockets):
            if ws.prepared:  # a handshake still in progress has nothing to close yet
                await ws.close(code=1001, message=b"server shutdown")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._context is not None
        ws = web.WebSocketResponse(
            protocols=(LMOS_SUBPROTOCOL,), heartbeat=self.heartbeat, max_msg_size=self.max_message
        )
        ready = ws.can_prepare(request)
        if not ready.ok:
            raise HTTPProblem(426, "this endpoint speaks WebSocket (subprotocol lmosprotocol)")
        if ready.protocol != LMOS_SUBPROTOCOL:
            raise HTTPProblem(400, f"ask for the WebSocket subprotocol {LMOS_SUBPROTOCOL!r}")
        if len(self._sockets) >= self.max_connections:
            raise HTTPProblem(503, f"{self.max_connections} WebSocket connections are open: try again later")
        self._sockets.add(ws)  # counted from now: concurrent handshakes cannot overshoot the cap
        connection = _Connection(ws, self._context, self.max_in_flight, self.max_streams)
        try:
            await ws.prepare(request)
            async for frame in ws:
                if frame.type == WSMsgType.TEXT:
                    connection.spawn(connection.handle(frame.data))
                elif frame.type == WSMsgType.BINARY:
                    try:
                        text = frame.data.decode()
                    except UnicodeDecodeError as exc:
                        problem = HTTPProblem(400, f"a binary frame that is not UTF-8 text: {exc}")
                        connection.spawn(connection.fail(problem, correlation=None))
                        continue
                    connection.spawn(connection.handle(text))
        finally:
            self._sockets.discard(ws)
            await connection.close()
        return ws
