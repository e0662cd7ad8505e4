"""Agents deployed as Kubernetes Services, mirrored into a directory while the Service exists.

The cluster is the source of truth: a Service labelled ``wot-agents.io/agent=true`` (or, the
Eclipse LMOS way, ``lmos-agent=true``) is an agent. Its TD is fetched from the Service's cluster
address, bounded in time and size and validated exactly as an mDNS announcement's
(:func:`discovery.fetch_description`), then kept registered in the directory through a
:class:`Registration` (ttl, renewal, re-registration), and deleted when the Service goes.
Annotations say where the TD is:

- ``wot-agents.io/td-path``: the TD's path (default ``/.well-known/wot``, WoT Discovery 6.1);
- ``wot-agents.io/port``: a port number or name (default: the port named ``http``/``https``, else
  the first);
- ``wot-agents.io/scheme``: ``http`` or ``https`` (default: from the port's name or appProtocol).

It is written over a generic :class:`KubeResource` (core ``v1/services`` by default) so the tests
can run it against a Service-shaped custom resource on a CRD-only API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Any

import aiohttp

from wot_agents import (
    KUBE_SERVICES,
    DirectoryClient,
    InteractionError,
    KubeClient,
    KubeInformer,
    KubeResource,
    KubeWatchEvent,
    WotAgentsError,
)
from wot_agents._fetch import (
    DEFAULT_FETCH_TIMEOUT,
    DEFAULT_MAX_TD_BYTES,
    fetch_description,
    open_fetch_session,
)

from ._lifecycle import Lifecycle
from ._registration import Registration

__all__ = [
    "AGENT_LABEL",
    "LMOS_AGENT_LABEL",
    "PORT_ANNOTATION",
    "SCHEME_ANNOTATION",
    "TD_PATH_ANNOTATION",
    "ServiceWatcher",
    "service_td_url",
]

log = logging.getLogger("discovery.kubernetes")

AGENT_LABEL = "wot-agents.io/agent"
LMOS_AGENT_LABEL = "lmos-agent"
TD_PATH_ANNOTATION = "wot-agents.io/td-path"
PORT_ANNOTATION = "wot-agents.io/port"
SCHEME_ANNOTATION = "wot-agents.io/scheme"
DEFAULT_TD_PATH = "/.well-known/wot"


def service_td_url(service: dict[str, Any], *, cluster_domain: str = "cluster.local") -> str:
    """Where a Service's TD is: its cluster IP (or DNS name when headless), port, scheme and path.

    Raises :class:`ValueError` naming what is wrong with the Service's annotations or ports.
    """
    meta = service.get("metadata", {})
    spec = service.get("spec", {})
    annotations = meta.get("annotations") or {}
    ports = spec.get("ports") or []
    wanted = str(annotations.get(PORT_ANNOTATION, "")).strip()
    port: dict[str, Any] | None = None
    if wanted:
        port = next((p for p in ports if str(p.get("port")) == wanted or p.get("name") == wanted), None)
        if port is None and wanted.isdigit() and 0 < int(wanted) < 65536:
            port = {"port": int(wanted)}
        if port is None:
            raise ValueError(f"{PORT_ANNOTATION}={wanted!r} names no port of the Service")
    else:
        port = next((p for p in ports if p.get("name") in ("http", "https")), ports[0] if ports else None)
        if port is None:
            raise ValueError("the Service has no port")
    scheme = str(annotations.get(SCHEME_ANNOTATION, "")).strip().lower()
    if not scheme:
        hint = f"{port.get('name', '')} {port.get('appProtocol', '')}".lower()
        scheme = "https" if "https" in hint else "http"
    if scheme not in ("http", "https"):
        raise ValueError(f"{SCHEME_ANNOTATION}={scheme!r}: only http and https are fetched")
    path = str(annotations.get(TD_PATH_ANNOTATION, DEFAULT_TD_PATH)).strip() or DEFAULT_TD_PATH
    if not path.startswith("/"):
        raise ValueError(f"{TD_PATH_ANNOTATION}={path!r} must be an absolute path")
    cluster_ip = str(spec.get("clusterIP") or "")
    if cluster_ip and cluster_ip != "None":
        host = f"[{cluster_ip}]" if ":" in cluster_ip else cluster_ip
    else:
        host = f"{meta['name']}.{meta.get('namespace', 'default')}.svc.{cluster_domain}"
    return f"{scheme}://{host}:{int(port['port'])}{path}"


@dataclass
class _Agent:
    url: str
    task: asyncio.Task[None]
    registration: Registration | None = None


class ServiceWatcher(Lifecycle):
    """Mirrors the agent Services of ``namespace`` (None: every namespace) into ``directory``.

    ``ttl`` is the registrations' ttl (renewed at half of it), so a directory whose watcher died
    forgets the agents; a TD that cannot be fetched yet (the pod is starting) is retried with
    backoff up to ``retry_max`` seconds apart, for as long as the Service exists.
    """

    def __init__(
        self,
        client: KubeClient,
        directory: DirectoryClient,
        *,
        namespace: str | None = None,
        kind: KubeResource = KUBE_SERVICES,
        ttl: float = 60.0,
        fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
        max_td_bytes: int = DEFAULT_MAX_TD_BYTES,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        self.client = client
        self.directory = directory
        self.namespace = namespace
        self.kind = kind
        self.ttl = ttl
        self.fetch_timeout = fetch_timeout
        self.max_td_bytes = max_td_bytes
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._informers = [
            KubeInformer(client, kind, namespace, self._changed, label_selector=f"{label}=true")
            for label in (AGENT_LABEL, LMOS_AGENT_LABEL)
        ]
        self._agents: dict[tuple[str, str], _Agent] = {}
        self._session: aiohttp.ClientSession | None = None

    @property
    def mirrored(self) -> dict[tuple[str, str], str | None]:
        """(namespace, Service name) -> the id registered for it (None while not yet fetched)."""
        return {
            key: agent.registration.thing_id if agent.registration is not None else None
            for key, agent in self._agents.items()
        }

    async def start(self) -> None:
        self._session = open_fetch_session()
        try:
            for informer in self._informers:
                await informer.start()
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Stop watching and deregister every mirrored agent; idempotent."""
        for informer in self._informers:
            await informer.aclose()
        agents, self._agents = list(self._agents.values()), {}
        await asyncio.gather(*(self._forget(agent) for agent in agents))
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _current(self, key: tuple[str, str]) -> dict[str, Any] | None:
        for informer in self._informers:
            obj = informer.objects.get(key)
            if obj is not None:
                return obj
        return None

    async def _changed(self, event: KubeWatchEvent) -> None:
        key = (event.namespace, event.name)
        service = self._current(key)  # a Service carrying both labels is one agent
        agent = self._agents.get(key)
        url: str | None = None
        if service is not None:
            try:
                url = service_td_url(service)
            except ValueError as exc:
                log.warning("Service %s/%s is not usable as an agent: %s", *key, exc)
        if agent is not None and agent.url == url:
            return
        if agent is not None:
            del self._agents[key]
            await self._forget(agent)
        if url is not None:
            self._agents[key] = _Agent(
                url, asyncio.create_task(self._mirror(key, url), name=f"agent-{key[1]}")
            )

    async def _forget(self, agent: _Agent) -> None:
        agent.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await agent.task
        if agent.registration is not None:
            await agent.registration.aclose()

    async def _mirror(self, key: tuple[str, str], url: str) -> None:
        """Fetch the TD (retrying while it fails), register it, then keep it fresh."""
        assert self._session is not None
        delay = self.retry_initial
        while True:
            try:
                _, description = await fetch_description(
                    self._session, [url], time_limit=self.fetch_timeout, max_bytes=self.max_td_bytes
                )
            except (InteractionError, WotAgentsError, ValueError) as exc:
                log.info("Service %s/%s: no TD at %s yet (%s); retrying in %.1f s", *key, url, exc, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.retry_max)
                continue
            agent = self._agents.get(key)
            if agent is None:
                return
            registration = Registration(self.directory, description, ttl=self.ttl)
            agent.registration = registration
            await registration.start()
            log.info("mirroring Service %s/%s (%s) into %s", *key, url, self.directory.url)
            return
