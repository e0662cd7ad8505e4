"""Cascade routing: a fast vector router decides when it is sure, an accurate one otherwise.

The accurate embedders cost a query two or three times what MiniLM does (MiniLM joined with e5:
~20 ms against ~7 ms), yet on most queries MiniLM alone is already right and sure. Asking the
accurate router only when the fast decision is uncertain (the hybrid fast track's rule: abstained,
scored under ``confident``, or less than ``margin`` ahead of the runner-up) keeps the accurate
router's accuracy at the fast one's typical latency. On 10-shot val, MiniLM -> MiniLM+e5 with the
default 0.5 / 0.2 matched the joined router on every dataset (CLINC150 intents 93.10% vs 93.13%,
domains 97.33%, Banking77 86.69%, LMOS 100%) while escalating 18.9%, 6.9%, 20.8% and 0.0% of
the queries. Test held it (docs/architecture.md): within 0.08 points of the join, p50 6-8.5 ms
against ~30 ms.

The 0.5 / 0.2 defaults are in the classifier rule's units (probabilities). When most decisions
are split (near-duplicate agents) nearly every query escalates and costs both routers, more than
the accurate router alone (bench/router_bench.py --scale: p50 53 ms against 28 ms at 1,000
agents that repeat 150 intents).

Both routers index every agent (the embedding cache shares the parts they have in common) and
keep their own abstention gates: a sure fast decision has passed the fast router's, every other
query gets the accurate router's. Each decision says which one made it (``cascade:fast``,
``cascade:accurate``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace

from wot_agents import AgentDescription, ChatMessage

from ._base import CompositeRouter
from ._decision import AgentFilter, Decision, uncertain
from ._vector import VectorRouter

__all__ = ["CascadeRouter"]


class CascadeRouter(CompositeRouter):
    """``fast`` decides alone when sure; ``accurate`` settles the rest (see the module docstring)."""

    method = "cascade"

    def __init__(
        self, fast: VectorRouter, accurate: VectorRouter, *, confident: float = 0.5, margin: float = 0.2
    ) -> None:
        self.fast = fast
        self.accurate = accurate
        self.confident = confident
        self.margin = margin
        self.parts = (fast, accurate)

    @property
    def routers(self) -> tuple[VectorRouter, VectorRouter]:
        return self.fast, self.accurate

    async def set_out_of_scope(self, examples: Sequence[str]) -> None:
        """Teach both routers the queries no agent should take (see ``VectorRouter``)."""
        await asyncio.gather(*(router.set_out_of_scope(examples) for router in self.routers))

    async def _route(
        self,
        query: str,
        history: Sequence[ChatMessage],
        candidates: Sequence[AgentDescription] | None,
        where: AgentFilter | None,
    ) -> Decision:
        decision = await self.fast.route(query, history, candidates, where=where)
        if decision.ranking and not uncertain(decision, self.confident, self.margin):
            return replace(decision, method="cascade:fast")
        decision = await self.accurate.route(query, history, candidates, where=where)
        return replace(decision, method="cascade:accurate")
