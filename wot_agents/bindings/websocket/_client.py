"""The LMOS WebSocket binding, client side: one connection per endpoint, many requests on it.

Requests are matched to replies by ``correlationID``; a reader task routes every incoming
message to the waiting request or the open stream it belongs to. A lost connection fails
what waits on it with :class:`ConnectError`; the next request opens a new one.

A redirected handshake is refused, as browsers refuse it (WHATWG Fetch, "establish a WebSocket
connection"): the credentials of a form go to its own endpoint, never on to wherever a
redirect points.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from ..._errors import ConnectError
from ..._model import Form
from ..._problem import ProblemDetails
from ..._trace import trace_headers
from .._interfaces import Interaction, Stream
from .._vocabulary import LMOS_SUBPROTOCOL
from ._messages import ENVELOPE, decode, encode, member, message

__all__ = ["WebSocketClient"]

#: Request message type and the member naming the affordance, per TD operation.
_REQUESTS: dict[str, tuple[str, str]] = {
    "readproperty": ("readProperty", "name"),
    "writeproperty": ("writeProperty", "name"),
    "observeproperty": ("observeProperty", "name"),
    "invokeaction": ("invokeAction", "action"),
    "queryaction": ("queryAction", "action"),
    "cancelaction": ("cancelAction", "action"),
    "subscribeevent": ("subscribeEvent", "event"),
}
_STOPS = {"observeproperty": ("unobserveProperty", "name"), "subscribeevent": ("unsubscribeEvent", "event")}
_CLOSED = object()


class _Connection:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, href: str) -> None:
        self.ws = ws
        self.href = href
        self.waiting: dict[str, asyncio.Queue[Any]] = {}
        self.reader = asyncio.ensure_future(self._read())

    @property
    def open(self) -> bool:
        return not self.ws.closed and not self.reader.done()

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    data = decode(frame.data)
                except ValueError:
                    continue
                queue = self.waiting.get(member(data, "correlationID") or "")
                if queue is not None:
                    queue.put_nowait(data)
        finally:
            for queue in self.waiting.values():
                queue.put_nowait(_CLOSED)

    async def send(self, data: dict[str, Any]) -> None:
        try:
            await self.ws.send_str(encode(data))
        except (ConnectionError, RuntimeError) as exc:
            raise ConnectError(f"the WebSocket to {self.href} is closed: {exc}", href=self.href) from exc

    async def aclose(self) -> None:
        await self.ws.close()
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader


class _Redirected(Exception):
    def __init__(self, status: int, location: str) -> None:
        super().__init__(location)
        self.status, self.location = status, location


def _refuse_redirects() -> aiohttp.TraceConfig:
    """A trace that stops aiohttp before it follows a redirect (``ws_connect`` always would)."""

    async def on_redirect(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestRedirectParams
    ) -> None:
        params.response.close()
        raise _Redirected(params.response.status, params.response.headers.get("Location", ""))

    trace = aiohttp.TraceConfig()
    trace.on_request_redirect.append(on_redirect)
    return trace


class WebSocketClient:
    """LMOS-protocol client for ``ws``/``wss`` forms with ``subprotocol: lmosprotocol``."""

    schemes = frozenset({"ws", "wss"})

    def __init__(self, *, max_message: int = 4 * 1024 * 1024, tls: ssl.SSLContext | None = None) -> None:
        self._max_message = max_message
        #: The TLS context for wss (with a client certificate: mutual TLS); None: the system's.
        self.tls = tls
        self._session: aiohttp.ClientSession | None = None
        self._connections: dict[tuple[str, tuple[tuple[str, str], ...]], _Connection] = {}
        self._lock = asyncio.Lock()

    def accepts(self, form: Form, op: str) -> bool:
        return form.subprotocol == LMOS_SUBPROTOCOL and op in _REQUESTS

    async def aclose(self) -> None:
        connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            await connection.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _connection(self, interaction: Interaction) -> _Connection:
        auth = tuple(
            sorted(
                {
                    **interaction.auth.headers,
                    **{"?" + k: v for k, v in interaction.auth.query.items()},
                }.items()
            )
        )
        key = (interaction.href, auth)
        async with self._lock:
            connection = self._connections.get(key)
            if connection is not None and connection.open:
                return connection
            if self._session is None:
                self._session = aiohttp.ClientSession(trace_configs=[_refuse_redirects()])
            try:
                async with asyncio.timeout(interaction.timeout):
                    ws = await self._session.ws_connect(
                        interaction.href,
                        protocols=(LMOS_SUBPROTOCOL,),
                        headers=dict(interaction.auth.headers),
                        params=dict(interaction.auth.query),
                        max_msg_size=self._max_message,
                        heartbeat=30.0,
                        ssl=self.tls or True,
                    )
            except TimeoutError:
                raise interaction.timed_out() from None
            except _Redirected as exc:
                raise interaction.refused(
                    exc.status,
                    f"the WebSocket handshake was redirected to {exc.location!r}; not followed, the"
                    " form's credentials are only sent to its own endpoint",
                    {"location": exc.location},
                ) from None
            except aiohttp.WSServerHandshakeError as exc:
                raise interaction.refused(exc.status, f"WebSocket handshake refused: {exc.message}") from exc
            except aiohttp.ClientError as exc:
                raise interaction.unreachable(exc) from exc
            connection = self._connections[key] = _Connection(ws, interaction.href)
            # Credentials that change (a refreshed group membership) make a new connection: the
            # one they replace closes now if idle, else with the client.
            for stale in [k for k in self._connections if k[0] == interaction.href and k != key]:
                if not self._connections[stale].waiting:
                    await self._connections.pop(stale).aclose()
            return connection

    def _request_message(self, interaction: Interaction, correlation: str, payload: Any) -> dict[str, Any]:
        message_type, key = _REQUESTS[interaction.op]
        body: dict[str, Any] = {key: interaction.name}
        if interaction.op == "writeproperty":
            body["data"] = payload
        elif interaction.op == "invokeaction" and payload is not None:
            body["input"] = payload
        return message(
            message_type,
            interaction.thing_id or "",
            correlation_id=correlation,
            trace=trace_headers(),
            **body,
        )

    async def request(self, interaction: Interaction, payload: Any = None) -> Any:
        connection = await self._connection(interaction)
        correlation = str(uuid.uuid4())
        replies: asyncio.Queue[Any] = asyncio.Queue()
        connection.waiting[correlation] = replies
        try:
            await connection.send(self._request_message(interaction, correlation, payload))
            async with asyncio.timeout(interaction.timeout):
                while True:
                    reply = await replies.get()
                    result = _outcome(reply, interaction)
                    if result is not _PENDING:
                        return result
        except TimeoutError:
            raise interaction.timed_out() from None
        finally:
            connection.waiting.pop(correlation, None)

    async def stream(self, interaction: Interaction) -> Stream[Any]:
        connection = await self._connection(interaction)
        correlation = str(uuid.uuid4())
        items: asyncio.Queue[Any] = asyncio.Queue()
        connection.waiting[correlation] = items
        await connection.send(self._request_message(interaction, correlation, None))

        async def values() -> AsyncIterator[Any]:
            while True:
                item = await items.get()
                if item is _CLOSED:
                    raise interaction.unreachable("the WebSocket closed")
                if item.get("messageType") == "error":
                    _outcome(item, interaction)
                yield item.get("value") if "value" in item else item.get("data")

        async def close() -> None:
            connection.waiting.pop(correlation, None)
            if connection.open:
                message_type, key = _STOPS[interaction.op]
                stop = message(message_type, interaction.thing_id or "", correlation_id=correlation)
                stop[key] = interaction.name
                with contextlib.suppress(ConnectError):
                    await connection.send(stop)

        return Stream(values(), close)


_PENDING = object()


def _outcome(reply: Any, interaction: Interaction) -> Any:
    """The result a reply carries, ``_PENDING`` for an interim status; errors raise."""
    if reply is _CLOSED:
        raise interaction.unreachable("the WebSocket closed before the reply")
    kind = reply.get("messageType")
    if kind == "error":
        status = str(reply.get("status", ""))
        code = int(status) if status.isdigit() else None
        members = {key: value for key, value in reply.items() if key not in ENVELOPE}
        problem = ProblemDetails.from_dict(members, status=code)
        raise interaction.refused(code, problem.message, problem.to_dict())
    if kind == "actionStatus":
        status = reply.get("status")
        if status == "completed":
            return reply.get("output")
        if status in ("failed", "cancelled"):
            raise interaction.refused(None, f"the action {status}", reply)
        return _PENDING
    if kind == "propertyReading":
        return None if interaction.op == "writeproperty" else reply.get("value")
    return reply.get("data")
