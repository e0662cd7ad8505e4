"""Serving an aiohttp application on host:port: the one way every wot-agents server starts.

The CLI, the agents' web server, the demo, the benches and the tests all call::

    async with serve_app(app, host="127.0.0.1", port=0) as url:   # port 0: any free port
        ...                                                       # url == "http://127.0.0.1:41234"

The URL names the address the socket is bound to (``http://0.0.0.0:8080`` for every interface);
:func:`local_host_name` gives the name others reach such a server by.

It reads the bound port from aiohttp's public ``AppRunner.addresses`` (not a private attribute
of the site), and on exit stops accepting, lets requests in flight finish for up to
``shutdown_timeout`` seconds and runs the app's cleanup, so nothing is left behind.

Every server gets the same guards against slow clients: a request's headers must be complete
within ``read_timeout`` of the connection opening (or of the previous response: the keep-alive
timer), and its body within ``read_timeout`` of the handler asking for it (408 otherwise), so a
half-sent request holds its connection for seconds, not forever. ``max_connections`` caps open
connections, half-sent requests included: one more is closed as soon as it is accepted.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

__all__ = ["DEFAULT_READ_TIMEOUT", "bound_url", "local_host_name", "serve_app", "url_host"]

#: Seconds a client has to send a request's headers, and then its body (a slow client's limit).
#: Also how long an idle keep-alive connection stays open: longer than aiohttp clients keep one
#: (15 s), so a client never reuses a connection the server is closing at that moment.
DEFAULT_READ_TIMEOUT = 20.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Hosts that bind every interface.
_WILDCARDS = ("", "0.0.0.0", "::")


def url_host(host: str) -> str:
    """``host`` as it stands in a URL (an IPv6 literal in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@asynccontextmanager
async def serve_app(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout: float = 5.0,
    reuse_address: bool | None = None,
    access_log: bool = False,
    access_log_format: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    read_timeout: float | None = DEFAULT_READ_TIMEOUT,
    max_connections: int | None = None,
    handler_cancellation: bool = False,
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` and yield its base URL (``http://host:port``, no slash at the end).

    ``port=0`` takes any free port (the URL says which). ``access_log`` turns aiohttp's access log
    on (with ``access_log_format`` if given). ``ssl_context`` serves HTTPS (the URL says
    ``https``). Errors of binding (``OSError``) and of the app's startup hooks propagate, with
    everything already started stopped again.
    """
    extra: dict[str, object] = {}
    if not access_log:
        extra["access_log"] = None
    elif access_log_format is not None:
        extra["access_log_format"] = access_log_format
    if read_timeout is not None:
        # aiohttp arms its keep-alive timer when a connection opens and only stops it once a
        # request's headers are complete: it is the header read timeout.
        extra["keepalive_timeout"] = read_timeout
        app.middlewares.append(_body_timeout(read_timeout))
    # Handlers still running at the end (one whose client went away, with handler_cancellation
    # off, runs on unseen by aiohttp's shutdown) are cancelled and awaited: nothing outlives the server.
    running: set[asyncio.Task[Any]] = set()
    app.middlewares.insert(0, _tracked(running))
    runner = web.AppRunner(
        app,
        shutdown_timeout=shutdown_timeout,
        handler_cancellation=handler_cancellation,
        **extra,  # type: ignore[arg-type]
    )
    try:
        await runner.setup()
        if max_connections is not None:
            _cap_connections(runner, max_connections)
        site = web.TCPSite(runner, host or None, port, reuse_address=reuse_address, ssl_context=ssl_context)
        await site.start()
        yield bound_url(runner, "https" if ssl_context is not None else "http")
    finally:
        await runner.cleanup()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


def _tracked(running: set[asyncio.Task[Any]]) -> Middleware:
    """Remember the task of every request in progress (outermost, so it sees every request)."""

    @web.middleware
    async def tracked(request: web.Request, handler: Handler) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is None:
            return await handler(request)
        running.add(task)
        try:
            return await handler(request)
        finally:
            running.discard(task)

    return tracked


def _body_timeout(limit: float) -> Middleware:
    """Read a request's body within ``limit`` seconds before its handler runs (408 otherwise).

    Innermost, so the app's own middlewares (problem details, security) see the 408 and a
    request refused before it gets here is never read.
    """

    @web.middleware
    async def body_timeout(request: web.Request, handler: Handler) -> web.StreamResponse:
        # A body already received whole (most are: they come with their headers) needs no timer
        # (~6 us a request for asyncio.timeout's timer).
        if request.body_exists and not request.content.is_eof():
            try:
                async with asyncio.timeout(limit):
                    await request.read()  # kept by aiohttp: the handler's read() returns it
            except TimeoutError:
                detail = f"the request body did not arrive within {limit:g} s"
                raise web.HTTPRequestTimeout(text=detail) from None
        return await handler(request)

    return body_timeout


def _cap_connections(runner: web.AppRunner, limit: int) -> None:
    """Close any connection accepted beyond ``limit`` open ones at once."""
    server = runner.server
    assert server is not None
    accept = server.connection_made

    def connection_made(handler: Any, transport: asyncio.Transport) -> None:
        accept(handler, transport)
        if len(server.connections) > limit:
            # As aiohttp's own keep-alive timeout does, once the handler has finished starting.
            asyncio.get_running_loop().call_soon(handler.force_close)

    server.connection_made = connection_made  # type: ignore[method-assign]


def bound_url(runner: web.BaseRunner, scheme: str = "http") -> str:
    """``scheme://host:port`` of the first TCP address a started runner listens on."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return f"{scheme}://{url_host(str(address[0]))}:{int(address[1])}"
    raise RuntimeError("the web server did not bind a TCP socket")


def local_host_name(host: str) -> str:
    """The name others can reach a server bound to ``host`` by: this machine's name for a wildcard."""
    return socket.gethostname() if host in _WILDCARDS else host
