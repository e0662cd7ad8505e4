"""The agents the runtime may route to, kept current by one source: a directory, mDNS, or files.

The catalog holds the current Agent Descriptions by id; its source keeps it current (the
directory's change events, mDNS announcements), never a query per turn. Listeners hear of each
change, so the router indexes an agent when it arrives, not on the turn that first needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

from wot_agents import (
    AgentDescription,
    DirectoryClient,
    DirectoryError,
    DirectoryEvent,
    WotAgentsError,
    is_chat_agent,
)

__all__ = ["AgentCatalog", "CatalogSource", "directory_source", "file_source", "mdns_source"]

log = logging.getLogger("runtime.catalog")

#: Called with (added or changed descriptions, removed ids) after each change.
Listener = Callable[[Sequence[AgentDescription], Sequence[str]], None]
#: Starts feeding a catalog when entered; stops when left.
CatalogSource = Callable[["AgentCatalog"], AbstractAsyncContextManager[None]]


class AgentCatalog:
    """Chat agents by id; ``ready`` once the source delivered its first complete view."""

    def __init__(self) -> None:
        self._agents: dict[str, AgentDescription] = {}
        self._listeners: list[Listener] = []
        self._changed = asyncio.Event()
        self.ready = asyncio.Event()

    @property
    def agents(self) -> Mapping[str, AgentDescription]:
        return MappingProxyType(self._agents)

    def __len__(self) -> int:
        return len(self._agents)

    def get(self, agent_id: str) -> AgentDescription | None:
        return self._agents.get(agent_id)

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def update(self, added: Iterable[AgentDescription] = (), removed: Iterable[str] = ()) -> None:
        """Apply a change; descriptions that are not chat agents (no ``chat`` action) are ignored."""
        changed: list[AgentDescription] = []
        for agent in added:
            if agent.id is None or not is_chat_agent(agent):
                if agent.id is not None and self._agents.pop(agent.id, None) is not None:
                    removed = [*removed, agent.id]
                continue
            if self._agents.get(agent.id) != agent:
                self._agents[agent.id] = agent
                changed.append(agent)
        gone = [agent_id for agent_id in removed if self._agents.pop(agent_id, None) is not None]
        if changed or gone:
            for listener in self._listeners:
                listener(changed, gone)
            self._changed.set()
            self._changed = asyncio.Event()

    def replace(self, agents: Iterable[AgentDescription]) -> None:
        """Make the catalog exactly ``agents`` (a full resync)."""
        fresh = [agent for agent in agents if agent.id is not None]
        keep = {agent.id for agent in fresh}
        self.update(fresh, [agent_id for agent_id in self._agents if agent_id not in keep])

    async def wait_for(self, predicate: Callable[[AgentCatalog], bool]) -> None:
        """Return once ``predicate(catalog)`` holds (tests and tools; bound it with a timeout)."""
        while not predicate(self):
            await self._changed.wait()


def _parse(document: Any, source: str) -> AgentDescription | None:
    try:
        return AgentDescription.from_dict(document)
    except WotAgentsError as exc:
        log.warning("ignoring the description from %s: %s", source, exc)
        return None


# --- sources ---------------------------------------------------------------------------------------


def file_source(*paths: str | Path, agents: Sequence[AgentDescription] = ()) -> CatalogSource:
    """Fixed candidates: Agent Description files (one TD or a JSON array each) and/or models."""

    @asynccontextmanager
    async def run(catalog: AgentCatalog) -> AsyncIterator[None]:
        found = list(agents)
        for path in paths:
            document = json.loads(await asyncio.to_thread(Path(path).read_text, encoding="utf-8"))
            for entry in document if isinstance(document, list) else [document]:
                agent = _parse(entry, str(path))
                if agent is not None:
                    found.append(agent)
        catalog.update(found)
        catalog.ready.set()
        yield

    return run


def directory_source(
    url: str | DirectoryClient, *, token: str | None = None, retry_delay: float = 1.0
) -> CatalogSource:
    """Candidates from a WoT Thing Description Directory: listed once, then kept current by its
    change events (SSE); after the event stream is lost the list is fetched again, so nothing
    missed meanwhile is lost."""

    @asynccontextmanager
    async def run(catalog: AgentCatalog) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            client = url
            if not isinstance(client, DirectoryClient):
                client = await stack.enter_async_context(DirectoryClient(client, token=token))
            task = asyncio.create_task(_follow(client, catalog, retry_delay), name="runtime directory events")
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return run


async def _follow(client: DirectoryClient, catalog: AgentCatalog, retry_delay: float) -> None:
    while True:
        try:
            events = cast(AsyncGenerator[DirectoryEvent, None], client.events(reconnect=False))
            # Subscribe first, then list: a change made while listing still arrives as an event.
            first = asyncio.ensure_future(anext(events))
            try:
                listed = [agent async for td in client.list() if (agent := _parse(td, client.url))]
                catalog.replace(listed)
                catalog.ready.set()
                event = await first
                while True:
                    await _apply(client, catalog, event.type, event.data)
                    event = await anext(events)
            finally:
                first.cancel()
                await events.aclose()
        except (DirectoryError, StopAsyncIteration) as exc:
            log.warning(
                "directory %s: %s; listing again in %.1f s", client.url, exc or "stream ended", retry_delay
            )
        await asyncio.sleep(retry_delay)


async def _apply(client: DirectoryClient, catalog: AgentCatalog, kind: str, data: Mapping[str, Any]) -> None:
    thing_id = str(data.get("id") or "")
    if not thing_id:
        return
    if kind == "thing_deleted":
        catalog.update(removed=[thing_id])
        return
    try:
        td = await client.get(thing_id)
    except DirectoryError as exc:
        if exc.status == 404:  # deleted again meanwhile
            catalog.update(removed=[thing_id])
            return
        raise
    agent = _parse(td, client.url)
    if agent is not None:
        catalog.update([agent])


def mdns_source(**browser_options: Any) -> CatalogSource:
    """Candidates announced on the LAN by mDNS / DNS-SD (needs the discovery extra)."""

    @asynccontextmanager
    async def run(catalog: AgentCatalog) -> AsyncIterator[None]:
        from discovery import Browser

        names: dict[str, str] = {}
        async with Browser(**browser_options) as browser:

            async def follow() -> None:
                async for event in browser:
                    previous = names.pop(event.agent.name, None)
                    description = event.agent.description
                    if event.kind != "removed" and description is not None and description.id:
                        names[event.agent.name] = description.id
                        catalog.update([description])
                    elif previous is not None:
                        catalog.update(removed=[previous])

            task = asyncio.create_task(follow(), name="runtime mdns")
            catalog.ready.set()
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return run
