"""LMOS channels in embedded mode: Channel and ChannelRollout YAML files, resolved continuously.

Each Channel (tenant, channel, subset) is resolved again whenever the catalog changes
(:func:`wot_agents.resolve_channel`); its routing is the channel's candidate set. A channel that
stops resolving (an agent providing a required capability left) keeps serving its last resolved
routing (the agents of it still present) and says so in its status, as the LMOS operator keeps
the last ChannelRouting when a channel turns unresolved. A ChannelRollout splits the channel's
conversations by weight between a stable and a canary Channel, the same way for the same
conversation every time.

The files are watched (:class:`ChannelFiles`, a polling task: their modification times, sizes
and inodes, so an editor's save-by-rename counts): an edit is loaded and resolved against the
agents at once; a broken edit (bad YAML, a bad resource, a missing file) keeps the last good
channels serving, is logged once and shows as ``reloadError`` in the channels' status until it
is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from router import AgentFilter
from wot_agents import (
    AgentDescription,
    Channel,
    ChannelRollout,
    ChannelRouting,
    load_channel_resources,
    resolve_channel,
)

from ._metrics import Metrics

__all__ = ["ChannelFiles", "ChannelTable", "load_channel_files"]

log = logging.getLogger("runtime.channels")

Key = tuple[str, str, str]


def load_channel_files(paths: Iterable[str | Path]) -> list[Channel | ChannelRollout]:
    """The Channels and ChannelRollouts of YAML files (several documents each, ``---`` apart)."""
    import yaml  # the runtime extra

    resources: list[Channel | ChannelRollout] = []
    for path in paths:
        text = Path(path).read_text(encoding="utf-8")
        try:
            resources += load_channel_resources(yaml.safe_load_all(text))
        except (ValueError, yaml.YAMLError) as exc:
            raise ValueError(f"{path}: {exc}") from None
    return resources


@dataclass
class _State:
    channel: Channel
    #: The latest resolution, and the last one that resolved (what the channel serves).
    current: ChannelRouting | None = None
    serving: ChannelRouting | None = None


class ChannelTable:
    """The channels of the runtime by (tenant, channel, subset), and the rollouts by (tenant, channel)."""

    def __init__(self, resources: Sequence[Channel | ChannelRollout] = ()) -> None:
        self._states: dict[Key, _State] = {}
        self._by_name: dict[str, Channel] = {}
        self._rollouts: dict[tuple[str, str], ChannelRollout] = {}
        self._reload_error: str | None = None
        self._resolved = False
        self._changed: asyncio.Event | None = None
        self.replace(resources)

    def replace(
        self, resources: Sequence[Channel | ChannelRollout], agents: Iterable[AgentDescription] = ()
    ) -> None:
        """Serve ``resources`` from now on, resolved against ``agents``; a ValueError (two Channels
        for one key, a rollout naming no Channel) leaves the table as it was. A channel that
        stays (same tenant, channel and subset) keeps its last resolved routing, to serve while
        its new definition does not resolve."""
        states: dict[Key, _State] = {}
        by_name: dict[str, Channel] = {}
        rollouts: dict[tuple[str, str], ChannelRollout] = {}
        for resource in resources:
            if resource.tenant is None or resource.channel is None:
                raise ValueError(
                    f"{resource.kind} {resource.metadata.name!r} needs the labels tenant and channel"
                )
            if isinstance(resource, Channel):
                key = (resource.tenant, resource.channel, resource.subset)
                if key in states:
                    raise ValueError(
                        f"two Channels for tenant {key[0]!r}, channel {key[1]!r}, subset {key[2]!r}"
                    )
                before = self._states.get(key)
                states[key] = _State(resource, serving=before.serving if before is not None else None)
                by_name[resource.metadata.name] = resource
        for resource in resources:
            if isinstance(resource, ChannelRollout):
                canary = resource.spec.strategy.canary
                for target in (canary.stable_channel, canary.canary_channel):
                    if target.name not in by_name:
                        raise ValueError(
                            f"ChannelRollout {resource.metadata.name!r} names Channel {target.name!r}, "
                            "which is not defined"
                        )
                assert resource.tenant is not None and resource.channel is not None
                rollouts[(resource.tenant, resource.channel)] = resource
        self._states, self._by_name, self._rollouts = states, by_name, rollouts
        if self._resolved:  # before the first view of the agents, the catalog's change resolves
            self.resolve(agents)
        self._notify()

    @property
    def reload_error(self) -> str | None:
        """Why the files' latest edit was not loaded (None: what serves is what the files say)."""
        return self._reload_error

    @reload_error.setter
    def reload_error(self, error: str | None) -> None:
        if error != self._reload_error:
            self._reload_error = error
            self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_for(self, predicate: Callable[[ChannelTable], bool]) -> None:
        """Until ``predicate(self)`` holds, checked after each reload or reload failure."""
        while not predicate(self):
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    def __bool__(self) -> bool:
        return bool(self._states)

    def channel_keys(self) -> list[Key]:
        """The (tenant, channel, subset) of every Channel served."""
        return sorted(self._states)

    def resolve(self, agents: Iterable[AgentDescription]) -> None:
        """Resolve every channel against the current agents (called after each catalog change)."""
        pool = list(agents)
        self._resolved = True
        for (tenant, channel, subset), state in self._states.items():
            routing = resolve_channel(state.channel, AgentFilter(tenant, channel, subset).apply(pool))
            state.current = routing
            if routing.resolved:
                state.serving = routing

    def subset_for(self, tenant: str, channel: str, conversation_id: str) -> str | None:
        """The subset a ChannelRollout assigns to this conversation, if one covers the channel."""
        rollout = self._rollouts.get((tenant, channel))
        if rollout is None:
            return None
        return self._by_name[rollout.choose(conversation_id)].subset

    def has(self, tenant: str, channel: str, subset: str) -> bool:
        return (tenant, channel, subset) in self._states

    def candidate_ids(self, tenant: str, channel: str, subset: str) -> list[str] | None:
        """The agents the channel routes to (its last resolved routing); None: no such Channel."""
        state = self._states.get((tenant, channel, subset))
        if state is None:
            return None
        return state.serving.agent_ids if state.serving is not None else []

    def routing(self, tenant: str, channel: str, subset: str) -> dict[str, Any] | None:
        """The ChannelRouting document: what the channel serves, and its current status."""
        state = self._states.get((tenant, channel, subset))
        if state is None or state.current is None:
            return None
        if state.current.resolved or state.serving is None:
            return state.current.to_dict()
        document = state.serving.to_dict()
        document["status"] = {**state.current.to_dict()["status"], "servingLastResolved": True}
        return document

    def channel(self, tenant: str, channel: str, subset: str) -> dict[str, Any] | None:
        state = self._states.get((tenant, channel, subset))
        return None if state is None else self._channel_document(state)

    def channels(self, tenant: str, subset: str | None = None) -> list[dict[str, Any]]:
        return [
            self._channel_document(state)
            for (owner, _, channel_subset), state in sorted(self._states.items())
            if owner == tenant and (subset is None or channel_subset == subset)
        ]

    def _channel_document(self, state: _State) -> dict[str, Any]:
        document = state.channel.to_dict()
        if state.current is not None:
            document["status"] = state.current.to_dict()["status"]
        if self.reload_error is not None:
            document.setdefault("status", {})["reloadError"] = self.reload_error
        return document


def _signature(paths: Sequence[Path]) -> tuple[tuple[int, int, int], ...]:
    """What tells an edit: each file's modification time, size and inode (a rename-save)."""
    stats = [os.stat(path) for path in paths]
    return tuple((stat.st_mtime_ns, stat.st_size, stat.st_ino) for stat in stats)


def _read(paths: Sequence[Path]) -> tuple[list[Channel | ChannelRollout], str]:
    """The files' resources and a digest of their text (so one broken state is logged once)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return load_channel_files(paths), digest.hexdigest()


class ChannelFiles:
    """Loads the channel files into ``table`` on entering (a broken file refuses to start), then
    reloads them whenever they change on disk, resolved against ``agents()``.

    A polling task looks every ``interval`` seconds (a stat per file, in a worker thread: no
    blocking call on the event loop, and no inotify, which misses files on some mounts). While
    the latest edit is broken the last good channels keep serving and ``table.reload_error``
    says why; the next good edit clears it.
    """

    def __init__(
        self,
        paths: Iterable[str | Path],
        table: ChannelTable,
        agents: Callable[[], Iterable[AgentDescription]],
        *,
        interval: float = 2.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.paths = [Path(path) for path in paths]
        self.table = table
        self.agents = agents
        self.interval = interval
        self.metrics = metrics
        if metrics is not None:
            metrics.describe(
                "runtime_channel_reloads_total", "counter", "Edits of the channel files, loaded or refused."
            )
            metrics.gauge(
                "runtime_channel_reload_failing",
                "1 while the channel files' latest edit is broken (the last good ones serve).",
                lambda: float(table.reload_error is not None),
            )
        self._loaded: tuple[tuple[int, int, int], ...] | None = None
        self._broken: str | None = None  # the digest (or error) of the broken state last logged
        self._task: asyncio.Task[None] | None = None
        #: Incremented by each reload that took effect.
        self.generation = 0

    async def __aenter__(self) -> Self:
        signature = await asyncio.to_thread(_signature, self.paths)
        resources, _ = await asyncio.to_thread(_read, self.paths)
        self.table.replace(resources, self.agents())
        self._loaded = signature
        self._task = asyncio.create_task(self._watch(), name="runtime channel files")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except Exception:  # never let the watcher die: the next look may succeed
                log.exception("looking at the channel files failed")

    async def poll(self) -> bool:
        """Look once: reload when the files changed since the last good load (or while the last
        edit is broken: a save may have been read half-written). Whether a new load took effect."""
        try:
            signature = await asyncio.to_thread(_signature, self.paths)
        except OSError as exc:
            self._failed(str(exc), str(exc))
            return False
        if signature == self._loaded and self._broken is None:
            return False
        try:
            resources, digest = await asyncio.to_thread(_read, self.paths)
        except (OSError, ValueError) as exc:
            self._failed(str(exc), str(exc))
            return False
        try:
            self.table.replace(resources, self.agents())
        except ValueError as exc:
            self._failed(str(exc), digest)
            return False
        self._loaded, self._broken = signature, None
        self.table.reload_error = None
        self.generation += 1
        log.info("reloaded the channel files: %d channels", len(self.table.channel_keys()))
        if self.metrics is not None:
            self.metrics.inc("runtime_channel_reloads_total", outcome="loaded")
        return True

    def _failed(self, error: str, state: str) -> None:
        self.table.reload_error = error
        if state != self._broken:  # once per broken state, not at every look
            self._broken = state
            log.error("the channel files' latest edit was not loaded (the last good ones serve): %s", error)
            if self.metrics is not None:
                self.metrics.inc("runtime_channel_reloads_total", outcome="failed")
