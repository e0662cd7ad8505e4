"""LMOS channels in embedded mode: Channel and ChannelRollout YAML files, resolved continuously.

Each Channel (tenant, channel, subset) is resolved again whenever the catalog changes
(:func:`wot_agents.resolve_channel`); its routing is the channel's candidate set. A channel that
stops resolving (an agent providing a required capability left) keeps serving its last resolved
routing (the agents of it still present) and says so in its status, as the LMOS operator keeps
the last ChannelRouting when a channel turns unresolved. A ChannelRollout splits the channel's
conversations by weight between a stable and a canary Channel, the same way for the same
conversation every time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router import AgentFilter
from wot_agents import (
    AgentDescription,
    Channel,
    ChannelRollout,
    ChannelRouting,
    load_channel_resources,
    resolve_channel,
)

__all__ = ["ChannelTable", "load_channel_files"]

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
        for resource in resources:
            if resource.tenant is None or resource.channel is None:
                raise ValueError(
                    f"{resource.kind} {resource.metadata.name!r} needs the labels tenant and channel"
                )
            if isinstance(resource, Channel):
                key = (resource.tenant, resource.channel, resource.subset)
                if key in self._states:
                    raise ValueError(
                        f"two Channels for tenant {key[0]!r}, channel {key[1]!r}, subset {key[2]!r}"
                    )
                self._states[key] = _State(resource)
                self._by_name[resource.metadata.name] = resource
        for resource in resources:
            if isinstance(resource, ChannelRollout):
                canary = resource.spec.strategy.canary
                for target in (canary.stable_channel, canary.canary_channel):
                    if target.name not in self._by_name:
                        raise ValueError(
                            f"ChannelRollout {resource.metadata.name!r} names Channel {target.name!r}, "
                            "which is not defined"
                        )
                assert resource.tenant is not None and resource.channel is not None
                self._rollouts[(resource.tenant, resource.channel)] = resource

    def __bool__(self) -> bool:
        return bool(self._states)

    def resolve(self, agents: Iterable[AgentDescription]) -> None:
        """Resolve every channel against the current agents (called after each catalog change)."""
        pool = list(agents)
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
        return document
