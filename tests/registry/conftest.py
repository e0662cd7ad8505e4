"""A real directory on a loopback port, and realistic descriptions to store in it."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from registry import DirectorySettings, create_app

EXAMPLE = Path(__file__).parents[2] / "examples" / "weather-agent.json"


@asynccontextmanager
async def running_app(**settings: Any) -> AsyncIterator[tuple[str, web.Application]]:
    """Serve a directory on 127.0.0.1 (a free port); yield its base URL and its app."""
    app = create_app(DirectorySettings(**settings))
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running_directory(**settings: Any) -> AsyncIterator[str]:
    """Serve a directory on 127.0.0.1 (a free port) and yield its base URL."""
    async with running_app(**settings) as (url, _):
        yield url


@pytest.fixture
async def directory() -> AsyncIterator[str]:
    async with running_directory(purge_interval=0.2) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_td() -> Callable[..., dict[str, Any]]:
    """A valid Agent Description; keyword arguments override members (None removes one)."""
    base = json.loads(EXAMPLE.read_text())

    def make(**members: Any) -> dict[str, Any]:
        td = copy.deepcopy(base)
        for key, value in members.items():
            key = key.replace("__", ":")
            if value is None:
                td.pop(key, None)
            else:
                td[key] = value
        return td

    return make
