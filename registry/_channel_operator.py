"""LMOS channels from the cluster: ``Channel`` resources resolved against the directory's agents.

What the Eclipse LMOS operator does, for the agents of a W3C directory: every ``Channel``
(``lmos.eclipse/v1``, as LMOS users apply them) is resolved with :func:`wot_agents.resolve_channel`
against the agents serving its tenant, channel and subset; a resolved channel gets a
``ChannelRouting`` of the same name (its capability groups: which agent serves which required
capability; what the LMOS Router reads), and every channel gets its ``status``
(``resolveStatus``, ``unresolvedRequiredCapabilities``). As in LMOS, an unresolved channel keeps
the ChannelRouting it had: changes that cannot be served are not activated. A ``ChannelRollout``
gets a status saying whether both channels it splits between are resolved.

Channels are re-resolved whenever a Channel, a ChannelRollout or an agent changes (coalesced:
one pass for a burst). Only one replica writes: run it under :class:`wot_agents.LeaderElection`
(as ``ClusterDuties`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any, Self

from wot_agents import (
    AgentDescription,
    Channel,
    ChannelRollout,
    KubeClient,
    KubeInformer,
    KubeResource,
    KubernetesError,
    KubeWatchEvent,
    resolve_channel,
)
from wot_agents._backoff import Backoff

__all__ = ["CHANNELS", "CHANNEL_ROLLOUTS", "CHANNEL_ROUTINGS", "ChannelOperator", "serves"]

logger = logging.getLogger("registry.channels")

CHANNELS = KubeResource("lmos.eclipse", "v1", "channels", "Channel")
CHANNEL_ROLLOUTS = KubeResource("lmos.eclipse", "v1", "channelrollouts", "ChannelRollout")
CHANNEL_ROUTINGS = KubeResource("lmos.eclipse", "v1", "channelroutings", "ChannelRouting")


def serves(agent: AgentDescription, tenant: str | None, channel: str | None, subset: str) -> bool:
    """Whether ``agent`` serves a channel: the runtime's rule (router.AgentFilter) — an agent that
    declares no tenants, channels or subset serves all of them."""
    if tenant is not None and agent.supported_tenants and tenant not in agent.supported_tenants:
        return False
    if channel is not None and agent.supported_channels and channel not in agent.supported_channels:
        return False
    return agent.subset is None or agent.subset == subset


class ChannelOperator:
    """Resolves the Channels of ``namespace`` against ``agents()`` and writes the outcome.

    ``agents`` returns the directory's current agents; call :meth:`agents_changed` when they
    change (the directory wiring subscribes it to the store's feed).
    """

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        agents: Callable[[], Iterable[AgentDescription]],
        *,
        channels: KubeResource = CHANNELS,
        rollouts: KubeResource = CHANNEL_ROLLOUTS,
        routings: KubeResource = CHANNEL_ROUTINGS,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self._agents = agents
        self.routings = routings
        self.channels = KubeInformer(client, channels, namespace, self._changed)
        self.rollouts = KubeInformer(client, rollouts, namespace, self._changed)
        self._channels_kind = channels
        self._rollouts_kind = rollouts
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.passes = 0  # completed reconcile passes

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        await self.channels.start()
        await self.rollouts.start()
        self._dirty.set()
        self._task = asyncio.create_task(self._run(), name="lmos-channel-operator")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.channels.aclose()
        await self.rollouts.aclose()

    def agents_changed(self, *_: object) -> None:
        self._dirty.set()

    async def _changed(self, event: KubeWatchEvent) -> None:
        if event.type == "DELETED" and event.obj.get("kind") == "Channel":
            # The ChannelRouting belongs to the Channel (ownerReference: a cluster's garbage
            # collector would remove it too); deleted here as well, so it goes at once.
            with contextlib.suppress(KubernetesError):
                await self.client.delete(self.routings, self.namespace, event.name)
        self._dirty.set()

    async def _run(self) -> None:
        retry = Backoff(1.0)
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await self.reconcile()
            except KubernetesError as exc:
                logger.warning("reconciling channels failed, retrying in %.0f s: %s", retry.delay, exc)
                await retry.wait()
                self._dirty.set()
            else:
                retry.reset()
            self.passes += 1

    async def reconcile(self) -> None:
        """One pass over every Channel and ChannelRollout."""
        agents = list(self._agents())
        resolved: dict[str, bool] = {}
        for obj in list(self.channels.objects.values()):
            try:
                channel = Channel.model_validate(obj)
            except ValueError as exc:
                logger.warning("Channel %s is malformed: %s", obj["metadata"]["name"], exc)
                continue
            resolved[channel.metadata.name] = await self._reconcile_channel(obj, channel, agents)
        for obj in list(self.rollouts.objects.values()):
            await self._reconcile_rollout(obj, resolved)

    async def _reconcile_channel(
        self, obj: dict[str, Any], channel: Channel, agents: list[AgentDescription]
    ) -> bool:
        candidates = [a for a in agents if serves(a, channel.tenant, channel.channel, channel.subset)]
        routing = resolve_channel(channel, candidates)
        name = channel.metadata.name
        if routing.resolved:
            body = {
                "apiVersion": self.routings.api_version,
                "kind": "ChannelRouting",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": dict(channel.metadata.labels),
                    "ownerReferences": [
                        {
                            "apiVersion": obj["apiVersion"],
                            "kind": "Channel",
                            "name": name,
                            "uid": obj["metadata"]["uid"],
                            "controller": True,
                        }
                    ],
                },
                "spec": routing.spec.model_dump(by_alias=True, exclude_none=True),
            }
            await self._upsert(body)
        status = routing.status.model_dump(by_alias=True, exclude_none=True)
        status.setdefault("unresolvedRequiredCapabilities", None)  # a merge patch clears old ones
        await self._set_status(self._channels_kind, obj, status)
        return bool(routing.resolved)

    async def _upsert(self, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        current = await self.client.get(self.routings, self.namespace, name)
        if current is None:
            await self.client.create(self.routings, self.namespace, body)
        elif (
            current.get("spec") != body["spec"]
            or current["metadata"].get("labels") != body["metadata"]["labels"]
        ):
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            await self.client.replace(self.routings, self.namespace, body)

    async def _set_status(self, kind: KubeResource, obj: dict[str, Any], status: dict[str, Any]) -> None:
        """Patch the status subresource when it differs (the watch then shows the new status)."""
        wanted = {k: v for k, v in status.items() if v is not None}
        if (obj.get("status") or {}) != wanted:
            await self.client.merge_patch(
                kind, self.namespace, obj["metadata"]["name"], {"status": status}, subresource="status"
            )

    async def _reconcile_rollout(self, obj: dict[str, Any], resolved: dict[str, bool]) -> None:
        try:
            rollout = ChannelRollout.model_validate(obj)
        except ValueError as exc:
            logger.warning("ChannelRollout %s is malformed: %s", obj["metadata"]["name"], exc)
            return
        canary = rollout.spec.strategy.canary
        targets = [canary.stable_channel.name, canary.canary_channel.name]
        unresolved = [name for name in targets if not resolved.get(name, False)]
        status = {
            "resolveStatus": "UNRESOLVED" if unresolved else "RESOLVED",
            "unresolvedChannels": unresolved or None,
        }
        await self._set_status(self._rollouts_kind, obj, status)
