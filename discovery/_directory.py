"""Finding a directory by DNS-SD: the introduction of WoT Discovery 6.3 for a client given no
directory URL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from urllib.parse import urlsplit

from wot_agents import DirectoryNotFound

from ._browse import Browser, DiscoveredAgent

__all__ = ["directory_url", "find_directory"]


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


async def find_directory(
    *, within: float = 5.0, interfaces: Sequence[str] | None = None, name: str | None = None
) -> str:
    """The base URL of the first directory announced on the LAN whose TD validates.

    ``name`` picks one by its DNS-SD instance name (what ``wot-agents discover --directories``
    shows). Raises :class:`DirectoryNotFound` when none shows up ``within`` seconds.
    """
    async with Browser(directories_only=True, interfaces=interfaces) as browser:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                async for event in browser:
                    agent = event.agent
                    wanted = name is None or agent.announcement.instance == name
                    if event.kind != "removed" and agent.ok and wanted:
                        return directory_url(agent)
    which = f"named {name!r} " if name else ""
    raise DirectoryNotFound(f"no directory {which}announced _directory._sub._wot._tcp within {within:g} s")
