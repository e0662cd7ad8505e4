"""Serving an aiohttp application on host:port: the one way every wot-agents server starts.

The CLI, the agents' web server, the demo, the benches and the tests all call::

    async with serve_app(app, host="127.0.0.1", port=0) as url:   # port 0: any free port
        ...                                                       # url == "http://127.0.0.1:41234"

The URL names the address the socket is bound to (``http://0.0.0.0:8080`` for every interface);
:func:`local_host_name` gives the name others reach such a server by.

It reads the bound port from aiohttp's public ``AppRunner.addresses`` (not a private attribute
of the site), and on exit stops accepting, lets requests in flight finish for up to
``shutdown_timeout`` seconds and runs the app's cleanup, so nothing is left behind.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

__all__ = ["bound_url", "local_host_name", "serve_app", "url_host"]

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
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, **extra)  # type: ignore[arg-type]
    try:
        await runner.setup()
        site = web.TCPSite(runner, host or None, port, reuse_address=reuse_address, ssl_context=ssl_context)
        await site.start()
        yield bound_url(runner, "https" if ssl_context is not None else "http")
    finally:
        await runner.cleanup()


def bound_url(runner: web.BaseRunner, scheme: str = "http") -> str:
    """``scheme://host:port`` of the first TCP address a started runner listens on."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return f"{scheme}://{url_host(str(address[0]))}:{int(address[1])}"
    raise RuntimeError("the web server did not bind a TCP socket")


def local_host_name(host: str) -> str:
    """The name others can reach a server bound to ``host`` by: this machine's name for a wildcard."""
    return socket.gethostname() if host in _WILDCARDS else host
