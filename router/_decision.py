"""What every router returns, and the tenant/channel/subset filter applied before matching."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

from wot_agents import AgentDescription, ChatMessage

__all__ = ["AgentFilter", "Decision", "Router", "agent_key", "uncertain"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The chosen agent (``None`` = abstain: no candidate fits), how sure, why, and which path decided.

    ``method`` names the path that made the decision: ``vector``, ``llm``, ``hybrid:requirements``
    (LMOS's LLM-extracted requirements then vector search), ``hybrid:vector`` (fast track, the vector
    decision was confident), ``hybrid:llm`` (fast track, the LLM settled an uncertain case),
    ``cascade:fast`` or ``cascade:accurate`` (the fast vector router was sure, or the accurate one
    settled an uncertain case).
    """

    agent_id: str | None
    score: float
    reason: str
    method: str
    capability_id: str | None = None
    #: The best agents considered, best first, as ``(agent_id, score)``.
    ranking: tuple[tuple[str, float], ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, object]:
        return {
            "agentId": self.agent_id,
            "score": round(self.score, 6),
            "reason": self.reason,
            "method": self.method,
            "capabilityId": self.capability_id,
            "ranking": [{"agentId": agent, "score": round(score, 6)} for agent, score in self.ranking],
        }


def uncertain(decision: Decision, confident: float, margin: float) -> bool:
    """Is a decision worth a second opinion? Abstained, scored under ``confident``, or less than
    ``margin`` ahead of the runner-up (the hybrid's fast track and the cascade both ask this)."""
    if decision.agent_id is None or decision.score < confident:
        return True
    runner_up = decision.ranking[1][1] if len(decision.ranking) > 1 else float("-inf")
    return decision.score - runner_up < margin


def agent_key(agent: AgentDescription) -> str:
    """The id a decision names: the TD ``id``, or the title for descriptions without one."""
    return agent.id or agent.title


@dataclass(frozen=True, slots=True)
class AgentFilter:
    """Keeps agents serving this tenant, channel and subset; ``None`` means "any".

    An agent that declares no ``lmos:supportedTenants``, channels or ``lmos:subset`` serves all of
    them; asking for a subset (LMOS uses them to separate e.g. canary from stable) excludes agents
    of other subsets.
    """

    tenant: str | None = None
    channel: str | None = None
    subset: str | None = None

    def accepts(self, agent: AgentDescription) -> bool:
        if self.tenant is not None and agent.supported_tenants and self.tenant not in agent.supported_tenants:
            return False
        if (
            self.channel is not None
            and agent.supported_channels
            and self.channel not in agent.supported_channels
        ):
            return False
        return self.subset is None or agent.subset is None or agent.subset == self.subset

    def apply(self, agents: Iterable[AgentDescription]) -> list[AgentDescription]:
        return [agent for agent in agents if self.accepts(agent)]


class Router(Protocol):
    """The one routing API, whatever the method behind it: what callers (the CLI, the runtime) use.

    Teach it agents with :meth:`add` / :meth:`remove`, then :meth:`route` a user's turn with the
    conversation before it (the SDK's :class:`~wot_agents.ChatMessage`, as a chat agent receives
    it). A router may learn in the background (the vector classifier refits after changes):
    :meth:`refitted` waits until its decisions reflect every change so far, so a caller that must
    not depend on timing awaits it after teaching. Close it with :meth:`aclose` or ``async with``.
    Every router implements it through :class:`~router.RouterBase`.
    """

    async def add(self, agents: Sequence[AgentDescription | Mapping[str, Any]]) -> int: ...

    async def remove(self, agent_id: str) -> bool: ...

    async def route(
        self,
        query: str,
        history: Sequence[ChatMessage] = (),
        candidates: Sequence[AgentDescription | Mapping[str, Any]] | None = None,
        *,
        where: AgentFilter | None = None,
    ) -> Decision: ...

    async def refitted(self) -> None: ...

    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None: ...
