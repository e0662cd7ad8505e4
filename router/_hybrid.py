"""Hybrid routing: the vector router and an LLM together, in one of two ways.

- ``requirements`` (LMOS's hybrid): the LLM rewrites the request as the abstract capabilities it
  needs, and the vector router matches those instead of the raw wording (the raw query when the
  LLM fails).
- ``fast`` (the default): the vector router decides alone when it is confident; only an uncertain
  decision (low score, or a close second) goes to the LLM, restricted to the vector shortlist. The
  LLM is thus paid for on a minority of queries and can never pick an agent outside the shortlist.

Every decision says which path made it (``hybrid:vector``, ``hybrid:llm``, ``hybrid:requirements``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from wot_agents import AgentDescription, ChatMessage, LLMRoutingError

from ._base import CompositeRouter
from ._decision import AgentFilter, Decision, uncertain
from ._llm import LLMClient, LLMRouter, chat_history
from ._vector import VectorRouter

__all__ = ["MODES", "HybridRouter"]

MODES = ("fast", "requirements")

REQUIREMENTS_PROMPT = """List the abstract capabilities an assistant needs for the user's latest request,
as short noun phrases without names, numbers or other specifics of this user (at most 3).
Answer only with JSON: {"requirements": ["...", "..."]}"""


class HybridRouter(CompositeRouter):
    """Vector search and an LLM combined; see the module docstring for the two modes.

    ``confident``: a vector decision at or above this score, ``margin`` ahead of the runner-up, is
    taken without the LLM. ``shortlist``: how many vector-ranked agents the LLM chooses among.
    """

    method = "hybrid"

    def __init__(
        self,
        vector: VectorRouter,
        llm: LLMClient | LLMRouter,
        *,
        mode: str = "fast",
        confident: float = 0.5,
        margin: float = 0.2,
        shortlist: int = 5,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown hybrid mode {mode!r}; choose one of {', '.join(MODES)}")
        self.vector = vector
        self.llm = llm if isinstance(llm, LLMRouter) else LLMRouter(llm)
        self.mode = mode
        self.confident = confident
        self.margin = margin
        self.shortlist = shortlist
        vector.top = max(vector.top, shortlist)
        self.parts = (vector, self.llm)

    async def _route(
        self,
        query: str,
        history: Sequence[ChatMessage],
        candidates: Sequence[AgentDescription] | None,
        where: AgentFilter | None,
    ) -> Decision:
        if self.mode == "requirements":
            return await self._requirements(query, history, candidates, where)
        return await self._fast(query, history, candidates, where)

    async def _fast(
        self,
        query: str,
        history: Sequence[ChatMessage],
        candidates: Sequence[AgentDescription] | None,
        where: AgentFilter | None,
    ) -> Decision:
        decision = await self.vector.route(query, history, candidates, where=where)
        decision = replace(decision, method="hybrid:vector")
        if not decision.ranking or not uncertain(decision, self.confident, self.margin):
            return decision
        shortlist = [
            agent.description_model
            for agent_id, _ in decision.ranking[: self.shortlist]
            if (agent := self.vector.index.get(agent_id)) is not None
        ]
        try:
            chosen = await self.llm.choose(query, history, shortlist, method="hybrid:llm")
        except LLMRoutingError as exc:
            reason = (
                f"{decision.reason}; uncertain, but the LLM failed ({exc}), so the vector decision stands"
            )
            return replace(decision, reason=reason)
        scores = dict(decision.ranking)
        score = scores.get(chosen.agent_id, 0.0) if chosen.agent_id else 0.0
        return Decision(chosen.agent_id, score, chosen.reason, "hybrid:llm", None, decision.ranking)

    async def _requirements(
        self,
        query: str,
        history: Sequence[ChatMessage],
        candidates: Sequence[AgentDescription] | None,
        where: AgentFilter | None,
    ) -> Decision:
        def accept(reply: dict[str, Any]) -> list[str] | str:
            items = reply.get("requirements")
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                return '"requirements" must be an array of strings'
            cleaned = [item.strip() for item in items if item.strip()][:5]
            return cleaned or "no requirement was listed"

        schema = {
            "type": "object",
            "properties": {"requirements": {"type": "array", "items": {"type": "string"}, "maxItems": 5}},
            "required": ["requirements"],
            "additionalProperties": False,
        }
        messages = [
            {"role": "system", "content": REQUIREMENTS_PROMPT},
            *chat_history(history, self.llm.history_turns),
            {"role": "user", "content": query},
        ]
        try:
            requirements = await self.llm.llm.ask(messages, name="requirements", schema=schema, accept=accept)
        except LLMRoutingError as exc:
            decision = await asyncio.to_thread(self.vector.route_sync, query, candidates, where)
            reason = f"{decision.reason}; the LLM failed ({exc}), so the query itself was matched"
            return replace(decision, method="hybrid:vector", reason=reason)
        text = "; ".join(requirements)
        decision = await asyncio.to_thread(self.vector.route_sync, text, candidates, where)
        return replace(
            decision, method="hybrid:requirements", reason=f"requirements [{text}]: {decision.reason}"
        )
