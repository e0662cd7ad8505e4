"""The directory mode: mirroring the agents announced on the LAN into a directory.

Each agent announced by mDNS with a valid TD is registered in the directory with a ttl and kept
there while it is announced, and deleted when it says goodbye, so LAN agents become searchable by
SPARQL and JSON filters like any other. It talks to the directory over HTTP through
:class:`wot_agents.DirectoryClient`: the directory service knows nothing of mDNS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from wot_agents import DirectoryClient

from ._browse import Browser
from ._lifecycle import Lifecycle
from ._registration import Registration

__all__ = ["DirectoryBridge"]

log = logging.getLogger(__name__)


class DirectoryBridge(Lifecycle):
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
        """Announcement instance name -> id in the directory, of every agent mirrored now."""
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

    async def _run(self) -> None:
        assert self._client is not None
        async for event in self._browser:
            agent = event.agent
            current = self._registrations.get(agent.name)
            if event.kind == "removed" or not agent.ok or agent.announcement.kind == "Directory":
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
