"""Directories and the LAN: finding one by DNS-SD, and mirroring mDNS agents into one.

:func:`find_directory` is the DNS-SD introduction of WoT Discovery 6.3 for a client given no
directory URL. :class:`DirectoryBridge` is the directory mode: each agent announced on the LAN
(with a valid TD) is registered in the directory with a ttl and kept there while it is announced,
and deleted when it says goodbye, so LAN agents become searchable like any other. It talks to the
directory over HTTP through :class:`wot_agents.DirectoryClient`: the directory service knows
nothing of mDNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from wot_agents import DirectoryClient, DirectoryNotFound

from ._browse import Browser, DiscoveredAgent
from ._registration import Registration

__all__ = ["DirectoryBridge", "directory_url", "find_directory"]

log = logging.getLogger(__name__)


def directory_url(agent: DiscoveredAgent) -> str:
    """The API base URL of a discovered directory.

    The TD's ``base`` when it is on the host and port the TD came from (a path prefix is kept),
    else that origin: an announcement cannot send clients to some other host.
    """
    if agent.url is None:
        raise ValueError(f"{agent.name} has no fetched TD")
    origin = urlsplit(agent.url)
    base = agent.description.base if agent.description is not None else None
    if base:
        parsed = urlsplit(base)
        if (parsed.scheme, parsed.netloc) == (origin.scheme, origin.netloc):
            return base
    return f"{origin.scheme}://{origin.netloc}/"


async def find_directory(*, within: float = 5.0, interfaces: Sequence[str] | None = None) -> str:
    """The base URL of the first directory announced on the LAN whose TD validates.

    Raises :class:`DirectoryNotFound` when none shows up ``within`` seconds.
    """
    async with Browser(directories_only=True, interfaces=interfaces) as browser:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                async for event in browser:
                    if event.kind != "removed" and event.agent.ok:
                        return directory_url(event.agent)
    raise DirectoryNotFound(f"no directory announced _directory._sub._wot._tcp within {within:g} s")


class DirectoryBridge:
    """Mirrors the agents announced on the LAN into a directory while open.

    Each agent is one :class:`Registration` (ttl, renewal, re-registration after a directory
    restart); directories announced on the LAN, and agents whose TD could not be fetched, are
    left out.
    """

    def __init__(
        self,
        directory: DirectoryClient | str,
        *,
        token: str | None = None,
        ttl: float = 60.0,
        interfaces: Sequence[str] | None = None,
    ) -> None:
        self._client = directory if isinstance(directory, DirectoryClient) else None
        self._url = directory if isinstance(directory, str) else None
        self._token = token
        self._ttl = ttl
        self._browser = Browser(interfaces=interfaces)
        self._registrations: dict[str, Registration] = {}
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def mirrored(self) -> dict[str, str | None]:
        """Service instance name -> id in the directory, of every agent mirrored now."""
        return {name: registration.thing_id for name, registration in self._registrations.items()}

    async def start(self) -> None:
        if self._task is not None:
            return
        if self._client is None:
            assert self._url is not None
            self._client = DirectoryClient(self._url, token=self._token)
            await self._client.__aenter__()
        await self._browser.start()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="wot-directory-bridge")

    async def aclose(self) -> None:
        """Stop browsing and delete every mirrored TD from the directory; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._browser.aclose()  # ends the loop below
        if self._task is not None:
            await self._task
        registrations, self._registrations = list(self._registrations.values()), {}
        await asyncio.gather(*(registration.aclose() for registration in registrations))
        if self._url is not None and self._client is not None:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _run(self) -> None:
        assert self._client is not None
        async for event in self._browser:
            agent = event.agent
            current = self._registrations.get(agent.name)
            if event.kind == "removed" or not agent.ok or agent.service.kind == "Directory":
                if current is not None:
                    del self._registrations[agent.name]
                    await current.aclose()
                continue
            assert agent.description is not None
            if current is not None:
                await current.update(agent.description)
                continue
            registration = Registration(self._client, agent.description, ttl=self._ttl)
            self._registrations[agent.name] = registration
            await registration.start()
            log.info("mirroring %s into %s", agent.name, self._client.url)
