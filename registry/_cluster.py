"""The directory's work in a cluster that needs one writer: Service mirroring and LMOS channels.

Every replica serves the API; the replica holding the ``wot-directory-leader`` Lease also mirrors
agent Services into the directory (:class:`discovery.ServiceWatcher`, through the directory's own
HTTP API, like any client) and resolves LMOS Channels (:class:`ChannelOperator`, against the
directory's descriptions in memory). When it stops or dies, another replica takes the Lease over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Self

from wot_agents import (
    KUBE_SERVICES,
    AgentDescription,
    DescriptionError,
    DirectoryClient,
    KubeClient,
    KubeResource,
    LeaderElection,
)

from ._channel_operator import ChannelOperator
from ._directory import Directory

__all__ = ["LEADER_LEASE", "ClusterDuties"]

logger = logging.getLogger("registry.cluster")

LEADER_LEASE = "wot-directory-leader"


class ClusterDuties:
    """Runs the one-writer duties (``services``, ``channels``) while this replica leads."""

    def __init__(
        self,
        client: KubeClient,
        directory: Directory,
        url: str,
        *,
        namespace: str,
        services: bool = True,
        channels: bool = True,
        token: str | None = None,
        lease_seconds: float = 15.0,
        renew_every: float = 5.0,
        kind: KubeResource = KUBE_SERVICES,
    ) -> None:
        self.client = client
        self.directory = directory
        self.url = url
        self.namespace = namespace
        self.services = services
        self.channels = channels
        self.token = token
        self.kind = kind  # the Services watched (a Service-shaped custom resource in tests)
        self.election = LeaderElection(
            client, namespace, LEADER_LEASE, self._lead, lease_seconds=lease_seconds, renew_every=renew_every
        )
        self.operator: ChannelOperator | None = None
        self.watcher: Any = None  # the discovery.ServiceWatcher while leading

    async def __aenter__(self) -> Self:
        await self.election.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.election.aclose()

    def agents(self) -> Iterator[AgentDescription]:
        """The directory's live descriptions as Agent Descriptions (those that parse as one)."""
        for record in self.directory.records():
            with contextlib.suppress(DescriptionError, ValueError):
                yield AgentDescription.from_json(record.data)

    async def _lead(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            if self.channels:
                self.operator = ChannelOperator(self.client, self.namespace, self.agents)
                self.directory.store.subscribe(self.operator.agents_changed)
                await stack.enter_async_context(self.operator)
            if self.services:
                from discovery import ServiceWatcher  # mDNS's zeroconf comes with it: only when asked

                directory = await stack.enter_async_context(DirectoryClient(self.url, token=self.token))
                self.watcher = ServiceWatcher(
                    self.client, directory, namespace=self.namespace, kind=self.kind
                )
                await stack.enter_async_context(self.watcher)
            logger.info(
                "leading: %s",
                ", ".join(d for d, on in (("services", self.services), ("channels", self.channels)) if on),
            )
            await asyncio.Event().wait()  # until cancelled: leadership lost, or shutdown
