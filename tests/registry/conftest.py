"""A real directory on a loopback port, and realistic descriptions to store in it.

The directory API tests run against every store: a module that declares
``pytestmark = pytest.mark.usefixtures("store_kind")`` runs each test once with the SQLite store,
once with the in-memory one and once with the kubernetes one on the real API server (every
directory its tests start uses that store).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from registry import DirectorySettings, KubernetesStore, MemoryStore, Store
from tests import servers

STORE_KINDS = ("sqlite", "memory", "kubernetes")
_store_kind = "sqlite"  # what running_app uses; set by the store_kind fixture
_kube: Any = None  # the session's Kubernetes API server, for the kubernetes store
_namespaces = itertools.count()


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test once per store: the directories it starts use that one (the kubernetes store:
    each directory in a namespace of its own on the real API server of tests/conftest.py)."""
    global _store_kind, _kube
    if request.param == "kubernetes":
        _kube = request.getfixturevalue("kube")
    _store_kind = request.param
    try:
        yield request.param
    finally:
        _store_kind = "sqlite"


def _store(settings: DirectorySettings) -> Store | None:
    if _store_kind == "sqlite":
        return None  # the default: SQLiteStore on settings.db
    assert settings.db is None, f"the {_store_kind} store has no file"
    if _store_kind == "kubernetes":
        namespace = f"registry-{os.getpid()}-{next(_namespaces)}"
        return KubernetesStore(
            namespace=namespace, kubeconfig=_kube.kubeconfig, journal_size=settings.journal_size
        )
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
