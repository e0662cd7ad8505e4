"""One set of protocol clients shared by every thing a process consumes.

A protocol client holds the expensive part of talking to agents: the HTTP connection pool, the
open WebSocket connections (one per endpoint and credentials), the MQTT broker connections. A
process that consumes thousands of agents (a runtime, a router, a crawler) shares one
:class:`ClientPool` between them instead of opening a session per consumed thing::

    async with ClientPool(max_connections=256) as pool:
        weather = consume(weather_td, clients=pool)    # both share the HTTP session,
        news = pool.consume(news_td)                   # the same thing written shorter
        ...
    # closing the pool closed every session and connection; closing a thing closes its streams only

``consume(td)`` without a pool makes a private one, closed with the thing, as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from .bindings._interfaces import ClientBinding
from .bindings._vocabulary import MAX_REPLY

if TYPE_CHECKING:
    from ._consumer import ConsumedThing
    from ._model import AgentDescription
    from .trust._tls import TlsConfig

__all__ = ["ClientPool"]


class ClientPool:
    """The protocol clients (HTTP, WebSocket, MQTT) of many consumed things, made on first use.

    ``clients`` replaces the built-in client of the schemes it serves (e.g. one with other
    limits, or a new protocol). ``tls`` verifies https/wss/mqtts servers and presents its
    certificate; ``max_connections`` bounds the HTTP connections open at once, over all things;
    ``max_reply`` bounds what is read of one reply (bytes of a body, an event, a message).
    Close it (``aclose`` or ``async with``) to close every session and connection.
    """

    def __init__(
        self,
        clients: Sequence[ClientBinding] = (),
        *,
        tls: TlsConfig | None = None,
        max_connections: int = 100,
        max_reply: int = MAX_REPLY,
    ) -> None:
        self.tls = tls
        self.max_connections = max_connections
        self.max_reply = max_reply
        self._clients: dict[str, ClientBinding] = {}
        for client in clients:
            for scheme in client.schemes:
                self._clients[scheme] = client
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def client_for(self, scheme: str) -> ClientBinding | None:
        """The client for a URI scheme (made on first use, then shared); None for an unknown scheme."""
        if self._closed:
            raise RuntimeError("this ClientPool is closed")
        client = self._clients.get(scheme)
        if client is None:
            client = self._default_client(scheme)
            if client is not None:
                for known in client.schemes:
                    self._clients.setdefault(known, client)
                client = self._clients[scheme]
        return client

    def consume(
        self, td: AgentDescription | Mapping[str, Any] | str | bytes, **options: Any
    ) -> ConsumedThing:
        """``consume(td, clients=self, **options)``."""
        from ._consumer import consume

        return consume(td, clients=self, **options)

    async def aclose(self) -> None:
        """Close every client (their sessions, connections and streams); idempotent."""
        self._closed = True
        clients = {id(client): client for client in self._clients.values()}
        self._clients = {}
        for client in clients.values():
            await client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _default_client(self, scheme: str) -> ClientBinding | None:
        """The built-in client for a URI scheme (MQTT needs the mqtt extra)."""
        context = self.tls.client_context() if self.tls is not None else None
        if scheme in ("http", "https"):
            from .bindings.http import HttpClient

            return HttpClient(max_connections=self.max_connections, tls=context, max_reply=self.max_reply)
        if scheme in ("ws", "wss"):
            from .bindings.websocket import WebSocketClient

            return WebSocketClient(tls=context, max_message=self.max_reply)
        if scheme in ("mqtt", "mqtts"):
            from .bindings.mqtt import MqttClient

            return MqttClient(tls=context, max_reply=self.max_reply)
        return None
