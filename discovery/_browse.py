"""A live view of the WoT agents on the LAN, kept from mDNS / DNS-SD announcements.

:class:`Browser` watches ``_wot._tcp.local.`` (or only directories, ``_directory._sub``), fetches
each announced TD with the safeguards of :mod:`wot_agents._fetch`, and yields ``added`` / ``updated`` /
``removed`` events while keeping :attr:`Browser.agents` current. Work per service is one task, the
latest announcement winning; fetches share a bounded pool; the view has a size cap: a flood of
announcements costs bounded memory and never blocks the loop.

When the view is full, what gives way is what failed: a newcomer takes the place of the entry
that has been failing longest (an unreachable or invalid TD), and waits (in a bounded queue)
while there is none, to be admitted as soon as a failure frees a place. Agents whose TD was
fetched and valid are never evicted for a newcomer, so a flood of bogus announcements can
neither hide the agents already known nor keep a later genuine one out for long.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Self

import aiohttp
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from wot_agents import AgentDescription, AnnouncementError, ConnectError, RequestTimeout, WotAgentsError
from wot_agents._fetch import (
    DEFAULT_FETCH_TIMEOUT,
    DEFAULT_MAX_TD_BYTES,
    fetch_description,
    open_fetch_session,
)

from ._dnssd import (
    DIRECTORY_SUBTYPE,
    FETCHABLE_SCHEMES,
    WOT_SERVICE,
    Announcement,
    parse_txt,
    sort_addresses,
)
from ._lifecycle import Lifecycle
from ._net import open_zeroconf

__all__ = ["Browser", "DiscoveredAgent", "DiscoveryEvent"]

log = logging.getLogger(__name__)

EventKind = Literal["added", "updated", "removed"]
_RESOLVE_TIMEOUT_MS = 3000
#: Delays before retrying a TD that could not be reached (the agent may still be starting).
_RETRY_DELAYS = (0.25, 1.0)


@dataclass(frozen=True, slots=True)
class DiscoveredAgent:
    """An announced service and, when it could be fetched and validated, its TD."""

    announcement: Announcement
    url: str | None = None
    """The URL the TD was fetched from (one of :meth:`Announcement.td_urls`)."""
    description: AgentDescription | None = None
    error: str | None = None
    """Why there is no description: unreachable, not a valid TD, unsupported scheme..."""

    @property
    def name(self) -> str:
        return self.announcement.name

    @property
    def ok(self) -> bool:
        return self.description is not None


@dataclass(frozen=True, slots=True)
class DiscoveryEvent:
    kind: EventKind
    agent: DiscoveredAgent


_CLOSED = object()


class Browser(Lifecycle):
    """Browses for WoT services; iterate it for events, read :attr:`agents` for the current view.

    Use as ``async with Browser() as browser: async for event in browser: ...``. Iteration ends
    when the browser is closed.

    Every ``recheck_interval`` seconds each TD in the view is fetched again: an agent that died
    without a goodbye (its records live on in mDNS caches for many minutes) turns unusable
    (``updated`` with an ``error``) within about one interval, and usable again if it returns.
    """

    def __init__(
        self,
        *,
        directories_only: bool = False,
        zeroconf: AsyncZeroconf | None = None,
        interfaces: Sequence[str] | None = None,
        fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
        max_td_bytes: int = DEFAULT_MAX_TD_BYTES,
        max_agents: int = 1000,
        max_concurrent_fetches: int = 16,
        recheck_interval: float | None = 30.0,
    ) -> None:
        self._type = DIRECTORY_SUBTYPE if directories_only else WOT_SERVICE
        self._zc = zeroconf
        self._owns_zc = zeroconf is None
        self._interfaces = interfaces
        self._fetch_timeout = fetch_timeout
        self._max_td_bytes = max_td_bytes
        self._max_agents = max_agents
        self._slots = asyncio.Semaphore(max_concurrent_fetches)
        self._max_connections = max_concurrent_fetches
        self._agents: dict[str, DiscoveredAgent] = {}
        #: When each failed entry of the view started failing: the longest failing gives way first.
        self._failing_since: dict[str, float] = {}
        #: Announced services waiting for a place in a full view, oldest first (bounded).
        self._waiting: OrderedDict[str, None] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[DiscoveredAgent]]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._events: asyncio.Queue[DiscoveryEvent | object] = asyncio.Queue()
        self._session: aiohttp.ClientSession | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._recheck_interval = recheck_interval
        self._recheck: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def agents(self) -> Mapping[str, DiscoveredAgent]:
        """The current view, by service instance name (read-only, kept live)."""
        return MappingProxyType(self._agents)

    async def start(self) -> None:
        if self._browser is not None:
            return
        if self._closed:
            raise RuntimeError("the browser is closed")
        if self._zc is None:
            self._zc = open_zeroconf(self._interfaces)
        self._session = open_fetch_session(self._max_connections)
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, self._type, handlers=[self._on_change])
        if self._recheck_interval:
            self._recheck = asyncio.get_running_loop().create_task(
                self._recheck_loop(self._recheck_interval), name="wot-discovery recheck"
            )

    async def aclose(self) -> None:
        """Stop browsing, cancel every fetch, close sockets; ends iteration. Idempotent."""
        if self._closed:
            return
        self._closed = True
        browser, self._browser = self._browser, None
        if browser is not None:
            await browser.async_cancel()
        tasks = list(self._tasks.values())
        if self._recheck is not None:
            tasks.append(self._recheck)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.cancel()
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        zc, self._zc = self._zc, None
        if zc is not None and self._owns_zc:
            await zc.async_close()
        self._events.put_nowait(_CLOSED)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> DiscoveryEvent:
        item = await self._events.get()
        if item is _CLOSED:
            self._events.put_nowait(_CLOSED)  # every later call ends too
            raise StopAsyncIteration
        assert isinstance(item, DiscoveryEvent)
        return item

    async def wait_for(self, name: str) -> DiscoveredAgent:
        """The view's entry for ``name`` once there is one; bound the wait with ``asyncio.timeout``."""
        if name in self._agents:
            return self._agents[name]
        if self._closed:
            raise RuntimeError("the browser is closed")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(name, []).append(waiter)
        try:
            return await waiter  # type: ignore[no-any-return]
        finally:
            waiters = self._waiters.get(name, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._waiters.pop(name, None)

    # zeroconf calls this on the loop, synchronously: only bookkeeping here, the work goes to tasks.
    def _on_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if self._closed:
            return
        previous = self._tasks.pop(name, None)
        if previous is not None:
            previous.cancel()
        if state_change is ServiceStateChange.Removed:
            self._waiting.pop(name, None)
            self._remove(name)
            self._admit_waiting()
            return
        if name not in self._agents and not self._make_room():
            self._waiting.pop(name, None)
            self._waiting[name] = None
            if len(self._waiting) > self._max_agents:
                dropped, _ = self._waiting.popitem(last=False)
                log.warning("ignoring %s: the view holds %d working services", dropped, self._max_agents)
            return
        self._waiting.pop(name, None)
        self._schedule(name)

    def _remove(self, name: str) -> None:
        self._failing_since.pop(name, None)
        agent = self._agents.pop(name, None)
        if agent is not None:
            self._events.put_nowait(DiscoveryEvent("removed", agent))

    def _make_room(self) -> bool:
        """Whether one more service fits, after evicting the entry failing longest if need be."""
        if len(self._agents.keys() | self._tasks.keys()) < self._max_agents:
            return True
        evictable = [name for name in self._failing_since if name not in self._tasks]
        if not evictable:
            return False
        victim = min(evictable, key=self._failing_since.__getitem__)
        log.info("evicting %s (failing) to make room in the view", victim)
        self._remove(victim)
        return True

    def _admit_waiting(self) -> None:
        while self._waiting and self._make_room():
            name, _ = self._waiting.popitem(last=False)
            self._schedule(name)

    def _schedule(self, name: str) -> None:
        task = asyncio.get_running_loop().create_task(self._resolve(name), name=f"wot-discovery {name}")
        self._tasks[name] = task
        task.add_done_callback(lambda done: self._forget(name, done))

    async def _recheck_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for name in list(self._agents):
                if name not in self._tasks:  # a fresher announcement is being handled already
                    self._schedule(name)

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]
        if not task.cancelled() and task.exception() is not None:
            log.error("resolving %s failed", name, exc_info=task.exception())
        if self._waiting and not self._closed:
            self._admit_waiting()  # a failure may have freed a place

    async def _resolve(self, name: str) -> None:
        assert self._zc is not None
        info = AsyncServiceInfo(WOT_SERVICE, name)
        if not await info.async_request(self._zc.zeroconf, _RESOLVE_TIMEOUT_MS):
            log.debug("%s did not answer with its SRV/TXT records", name)
            known = self._agents.get(name)
            if known is not None and known.ok:  # a recheck: its records expired, nobody answers
                self._store(name, DiscoveredAgent(known.announcement, error="no longer answers mDNS queries"))
            return
        try:
            service = _announcement(name, info)
        except AnnouncementError as exc:
            log.warning("ignoring %s: %s", name, exc)
            return
        self._store(name, await self._fetch(service))

    def _store(self, name: str, agent: DiscoveredAgent) -> None:
        if self._tasks.get(name) is not asyncio.current_task():
            return  # superseded or said goodbye meanwhile: a late result must not resurrect it
        previous = self._agents.get(name)
        if agent.ok:
            self._failing_since.pop(name, None)
        else:
            self._failing_since.setdefault(name, asyncio.get_running_loop().time())
        if previous == agent:
            return
        self._agents[name] = agent
        self._events.put_nowait(DiscoveryEvent("updated" if previous else "added", agent))
        for waiter in self._waiters.pop(name, []):
            if not waiter.done():
                waiter.set_result(agent)

    async def _fetch(self, service: Announcement) -> DiscoveredAgent:
        if service.scheme not in FETCHABLE_SCHEMES:
            return DiscoveredAgent(service, error=f"scheme {service.scheme} cannot be fetched here")
        assert self._session is not None
        for delay in (*_RETRY_DELAYS, None):
            try:
                async with self._slots:
                    url, description = await fetch_description(
                        self._session,
                        service.td_urls(),
                        time_limit=self._fetch_timeout,
                        max_bytes=self._max_td_bytes,
                    )
                return DiscoveredAgent(service, url=url, description=description)
            except (ConnectError, RequestTimeout) as exc:
                if delay is None:
                    return DiscoveredAgent(service, error=str(exc))
                await asyncio.sleep(delay)
            except WotAgentsError as exc:
                return DiscoveredAgent(service, error=str(exc))
            except Exception as exc:  # a stranger's bytes must not drop the service with a traceback
                log.warning("fetching the TD of %s failed", service.name, exc_info=True)
                return DiscoveredAgent(service, error=f"{type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")


def _announcement(name: str, info: AsyncServiceInfo) -> Announcement:
    td_path, kind, scheme, revision = parse_txt(info.decoded_properties)
    if not info.port or not info.server:
        raise AnnouncementError("the SRV record has no port or target")
    return Announcement(
        name=name,
        kind=kind,
        scheme=scheme,
        td_path=td_path,
        server=info.server,
        port=info.port,
        addresses=sort_addresses(info.parsed_scoped_addresses(IPVersion.All)),
        revision=revision,
    )
