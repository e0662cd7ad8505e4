"""What every router shares: the async context manager, the query check, and how a router made of
other routers (the hybrid, the cascade) passes agent changes, refits and closing on to its parts.

A router implements :class:`~router.Router` by subclassing :class:`RouterBase` (a router that keeps
agents itself: vector, LLM) or :class:`CompositeRouter` (one that delegates to inner routers) and
writing ``_route``, so the public call, its checks and the lifecycle are written once, not once
per method.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Self

from wot_agents import AgentDescription, ChatMessage, RoutingError

from ._decision import AgentFilter, Decision

__all__ = ["CompositeRouter", "RouterBase", "check_query", "conversation", "descriptions"]


def check_query(query: str) -> None:
    """Refuse a query that says nothing: no method can route it, and an embedding of it is noise."""
    if not query.strip():
        raise RoutingError("cannot route an empty query")


def conversation(history: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The history as messages. ``(role, content)`` pairs, the form before :class:`ChatMessage`,
    are still read (callers written against it keep working while they move over); a role that is
    not a chat role is read as the user's."""
    turns: list[ChatMessage] = []
    for turn in history:
        if isinstance(turn, ChatMessage):
            turns.append(turn)
            continue
        role, content = turn
        turns.append(ChatMessage(role=role if role in ("assistant", "system") else "user", content=content))
    return turns


def descriptions(agents: Sequence[AgentDescription | Mapping[str, Any]]) -> list[AgentDescription]:
    """Agent Descriptions from models or parsed TDs: every public call takes either."""
    return [
        agent if isinstance(agent, AgentDescription) else AgentDescription.from_dict(agent)
        for agent in agents
    ]


class RouterBase(ABC):
    """The shared half of every router; subclasses say how to add, remove and route.

    ``method`` names the router in decisions and reports. :meth:`refitted` waits until the router
    decides with everything taught so far (a no-op for a router without a background model).
    """

    method: ClassVar[str]

    async def add(self, agents: Sequence[AgentDescription | Mapping[str, Any]]) -> int:
        """Index new agents and re-index changed ones (models or parsed TDs alike); the number added
        or changed."""
        return await self._add(descriptions(agents))

    @abstractmethod
    async def _add(self, agents: Sequence[AgentDescription]) -> int:
        """The method's own indexing of agents already parsed (see :meth:`add`)."""

    @abstractmethod
    async def remove(self, agent_id: str) -> bool:
        """Forget an agent; whether it was known."""

    async def route(
        self,
        query: str,
        history: Sequence[ChatMessage] = (),
        candidates: Sequence[AgentDescription | Mapping[str, Any]] | None = None,
        *,
        where: AgentFilter | None = None,
    ) -> Decision:
        """Choose among ``candidates`` (default: every agent added; models or parsed TDs) passing
        ``where`` (default: the router's own filter); ``history`` is the conversation before
        ``query``, oldest first."""
        check_query(query)
        chosen = None if candidates is None else descriptions(candidates)
        return await self._route(query, history, chosen, where)

    @abstractmethod
    async def _route(
        self,
        query: str,
        history: Sequence[ChatMessage],
        candidates: Sequence[AgentDescription] | None,
        where: AgentFilter | None,
    ) -> Decision:
        """The method's own decision for a query already checked (see :meth:`route`)."""

    async def refitted(self) -> None:
        """Wait until decisions reflect every agent change so far."""
        return None  # nothing learns in the background unless a subclass says so

    async def aclose(self) -> None:
        """Release what the router holds; idempotent."""
        return None  # nothing to release unless a subclass holds something

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()


class CompositeRouter(RouterBase):
    """A router made of ``parts``: every part learns every agent change, refits and closes with it.

    The first part's answer is the composite's (``add`` returns how many agents it changed).
    """

    parts: tuple[RouterBase, ...]

    async def _add(self, agents: Sequence[AgentDescription]) -> int:
        changed = await asyncio.gather(*(part._add(agents) for part in self.parts))
        return changed[0]

    async def remove(self, agent_id: str) -> bool:
        removed = await asyncio.gather(*(part.remove(agent_id) for part in self.parts))
        return removed[0]

    async def refitted(self) -> None:
        await asyncio.gather(*(part.refitted() for part in self.parts))

    async def aclose(self) -> None:
        # every part is closed even when one fails; the first failure is raised after
        results = await asyncio.gather(*(part.aclose() for part in self.parts), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
