"""A real directory on a loopback port, and realistic descriptions to store in it.

The directory API tests run against both stores: a module that declares
``pytestmark = pytest.mark.usefixtures("store_kind")`` runs each test once with the SQLite store
and once with the in-memory one (every directory its tests start uses that store).
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from registry import DirectorySettings, MemoryStore, Store
from tests import servers

EXAMPLE = Path(__file__).parents[2] / "examples" / "weather-agent.json"
STORE_KINDS = ("sqlite", "memory")
_store_kind = "sqlite"  # what running_app uses; set by the store_kind fixture


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test once per store: the directories it starts use that one."""
    global _store_kind
    _store_kind = request.param
    try:
        yield request.param
    finally:
        _store_kind = "sqlite"


def _store(settings: DirectorySettings) -> Store | None:
    if _store_kind == "sqlite":
        return None  # the default: SQLiteStore on settings.db
    assert settings.db is None, "the memory store has no file"
    return MemoryStore(journal_size=settings.journal_size)


@asynccontextmanager
async def running_app(
    store: Store | None = None, **settings: Any
) -> AsyncIterator[tuple[str, web.Application]]:
    """Serve a directory on 127.0.0.1 (a free port); yield its base URL and its app.

    ``store``: the one to inject; by default the store of the test's ``store_kind``.
    """
    config = DirectorySettings(**settings)
    async with servers.running_app(store if store is not None else _store(config), **settings) as served:
        yield served


@asynccontextmanager
async def running_directory(store: Store | None = None, **settings: Any) -> AsyncIterator[str]:
    """Serve a directory on 127.0.0.1 (a free port) and yield its base URL."""
    async with running_app(store, **settings) as (url, _):
        yield url


@pytest.fixture
async def directory() -> AsyncIterator[str]:
    # On the store of ``store_kind`` where a module uses it (usefixtures come first), else SQLite.
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
