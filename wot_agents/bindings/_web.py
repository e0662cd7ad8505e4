"""One aiohttp application serving an agent's HTTP and WebSocket bindings, and its TD.

The HTTP binding and the WebSocket binding both install their routes into the same app, so an
agent needs one port whatever it speaks over the Web. This module owns what they share: the
TD endpoints, security enforcement, CORS, limits, and answering errors with RFC 7807 problems
(shaped by ``wot_agents._problem``, like every other server's).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from .._agent import FormProvider
from .._app_server import DEFAULT_READ_TIMEOUT, local_host_name, serve_app, url_host
from .._errors import TrustError
from .._model import AgentDescription, Form
from .._problem import HTTPProblem, ProblemDetails, problem_middleware
from .._trace import continue_trace
from ..trust import did_web_url
from ..trust._tls import peer_identity
from ._interfaces import ServeContext
from ._security import Presented
from ._vocabulary import Kind, encode_payload

__all__ = ["WebBinding", "WebServer", "json_response"]

log = logging.getLogger("wot_agents.bindings")

#: Paths under which the agent's TD is public: discovery must work before authentication.
WELL_KNOWN = "/.well-known/wot"
#: Where a did:web without a path has its DID document (did:web method spec 3.2.1).
DID_WELL_KNOWN = "/.well-known/did.json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(value: Any, *, status: int = 200, content_type: str = "application/json") -> web.Response:
    return web.Response(status=status, body=encode_payload(value), content_type=content_type, charset="utf-8")


class WebBinding(FormProvider, Protocol):
    """A binding living inside the shared aiohttp app (HTTP, WebSocket)."""

    #: ``http`` or ``ws``: the key of this binding in ``RunningAgent.base_urls``.
    kind: str

    def base(self, http_base: str) -> str:
        """This binding's base URL on an app reachable at ``http_base``."""
        ...

    def install(self, app: web.Application, context: ServeContext, url: Callable[[str], str]) -> None:
        """Add routes under ``/{context.slug}``; ``url(path)`` makes an absolute URL once bound."""
        ...

    async def aclose(self) -> None:
        """Stop streams and background work before the app shuts down."""
        ...


class WebServer:
    """Runs the shared app; a :class:`~wot_agents.bindings.BindingServer` over its web bindings.

    ``cors`` is ``None`` (no CORS headers), ``"*"`` or a list of allowed origins. ``max_body``
    bounds request bodies; ``max_connections`` bounds concurrent requests and streams (503 after)
    and open connections (closed at once after), half-sent requests included, which
    ``read_timeout`` closes (headers) or answers 408 (body). A client that goes away cancels its
    request's handler at once: a stream or an action nobody waits for frees its slot.
    """

    def __init__(
        self,
        bindings: Sequence[WebBinding],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
        cors: str | Sequence[str] | None = None,
        max_body: int = 1024 * 1024,
        max_connections: int = 1000,
        shutdown_timeout: float = 5.0,
        tls: ssl.SSLContext | None = None,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        self.read_timeout = read_timeout
        self.bindings = tuple(bindings)
        self.host = host
        self.port = port
        self.public_url = public_url.rstrip("/") if public_url else None
        self.cors = cors
        self.max_body = max_body
        self.max_connections = max_connections
        self.shutdown_timeout = shutdown_timeout
        #: TLS (HTTPS, WSS): a server context; one that requires client certificates makes it mTLS.
        self.tls = tls
        self._base: str | None = None
        self._context: ServeContext | None = None
        self._active = 0

    @property
    def base_url(self) -> str | None:
        """``http://host:port`` once running (or ``public_url`` when given)."""
        return self.public_url or self._base

    def urls(self) -> dict[str, str]:
        if self.base_url is None:
            return {}
        return {binding.kind: binding.base(self.base_url) for binding in self.bindings}

    def url(self, path: str) -> str:
        if self.base_url is None:
            raise RuntimeError("the web server is not running yet: its URLs are not known")
        return self.base_url + path

    def forms(self, kind: Kind, name: str) -> list[Form]:
        return [form for binding in self.bindings for form in binding.forms(kind, name)]

    def thing_forms(self) -> list[Form]:
        return [form for binding in self.bindings for form in binding.thing_forms()]

    async def description_changed(self, description: AgentDescription) -> None:
        """Nothing to push: the TD endpoints always answer the current description."""

    def td_path(self, context: ServeContext) -> str:
        return f"/{context.slug}"

    @asynccontextmanager
    async def run(self, context: ServeContext) -> AsyncIterator[None]:
        self._context = context
        app = web.Application(
            client_max_size=self.max_body,
            middlewares=[self._trace, self._limits, problem_middleware(log), self._cors, self._security],
        )
        app.router.add_get(WELL_KNOWN, self._td)
        app.router.add_get(self.td_path(context), self._td)
        app.router.add_get(DID_WELL_KNOWN, self._did)
        app.router.add_get("/{path:.+}/did.json", self._did)
        for binding in self.bindings:
            binding.install(app, context, self.url)
        async with serve_app(
            app,
            self.host,
            self.port,
            shutdown_timeout=self.shutdown_timeout,
            ssl_context=self.tls,
            read_timeout=self.read_timeout,
            max_connections=self.max_connections,
            handler_cancellation=True,
        ) as bound:
            try:
                # Bound to every interface: forms name this host, which others can resolve (pass
                # public_url for anything else, e.g. behind a proxy).
                port = urlsplit(bound).port
                self._base = (
                    f"{'https' if self.tls else 'http'}://{url_host(local_host_name(self.host))}:{port}"
                )
                yield
            finally:
                # Close the streams first, or the runner would wait for SSE responses that never end.
                for binding in self.bindings:
                    await binding.aclose()
                self._base = None

    async def _td(self, request: web.Request) -> web.Response:
        assert self._context is not None
        return json_response(self._context.describe().to_dict(), content_type="application/td+json")

    def _did_path(self) -> str | None:
        assert self._context is not None
        document = self._context.did_document()
        return None if document is None else urlsplit(did_web_url(document["id"])).path

    async def _did(self, request: web.Request) -> web.Response:
        """The agent's did:web document, at the one path its DID names (did:web method 3.2.1)."""
        assert self._context is not None
        document = self._context.did_document()
        if document is None or request.path != self._did_path():
            raise web.HTTPNotFound()
        return json_response(document, content_type="application/did+json")

    def _is_public(self, request: web.Request) -> bool:
        assert self._context is not None
        if request.method == "OPTIONS" or request.path in (WELL_KNOWN, self.td_path(self._context)):
            return True
        return request.path.endswith("/did.json") and request.path == self._did_path()

    @web.middleware
    async def _trace(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        # The caller's W3C trace (headers ``traceparent``/``tracestate``) is current while its
        # request is handled: handlers see it, their calls join it, their log lines show it.
        with continue_trace(request.headers.get("traceparent"), request.headers.get("tracestate")):
            return await handler(request)

    @web.middleware
    async def _limits(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self._active >= self.max_connections:
            return ProblemDetails(503, f"more than {self.max_connections} requests in progress").response()
        self._active += 1
        try:
            return await handler(request)
        finally:
            self._active -= 1

    @web.middleware
    async def _cors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.cors:
            return await handler(request)
        origin = request.headers.get("Origin")
        allowed = self.cors == "*" or (origin is not None and origin in self.cors)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, PUT, POST, DELETE, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", "Authorization, Content-Type"
            )
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = await handler(request)
        if allowed and origin is not None:
            response.headers["Access-Control-Allow-Origin"] = "*" if self.cors == "*" else origin
            response.headers["Vary"] = "Origin"
        return response

    @web.middleware
    async def _security(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        assert self._context is not None
        access = self._context.access
        if (self._context.security or access is not None) and not self._is_public(request):
            peer = peer_identity(request.transport.get_extra_info("peercert") if request.transport else None)
            presented = Presented(headers=request.headers, query=request.query, peer=peer)
            for scheme in self._context.security:
                if not scheme.authenticate(presented):
                    challenge = scheme.challenge()
                    raise HTTPProblem(
                        401,
                        f"the {scheme.name} security scheme was not satisfied",
                        headers={"WWW-Authenticate": challenge} if challenge else None,
                    )
            if access is not None:
                try:
                    caller = await access.identify(presented, self._context.thing_id)
                except TrustError as exc:
                    raise HTTPProblem(401, f"the caller's proof was refused: {exc}") from None
                with access.acting(caller):  # the affordances check it (403 if not allowed)
                    return await handler(request)
        return await handler(request)
