"""Evaluating a router on labelled queries: the engine of ``wot-agents router eval`` and the benches."""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wot_agents import AgentDescription, DescriptionError

from ._decision import Decision, Router

__all__ = ["EvalReport", "LabelledQuery", "evaluate", "load_agents", "load_queries"]


@dataclass(frozen=True, slots=True)
class LabelledQuery:
    text: str
    #: The expected agent's id, or ``None`` for an out-of-scope query that should get no agent.
    agent: str | None


def load_agents(path: str | Path) -> list[AgentDescription]:
    """A JSON array of Agent Descriptions."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(document, list):
        raise DescriptionError(f"{path}: expected a JSON array of Agent Descriptions")
    return [AgentDescription.from_dict(item) for item in document]


def load_queries(path: str | Path) -> list[LabelledQuery]:
    """A CSV with columns ``text,agent``; an empty agent marks an out-of-scope query."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"text", "agent"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: needs the columns text,agent (found {reader.fieldnames})")
        return [LabelledQuery(row["text"], row["agent"].strip() or None) for row in reader]


@dataclass(slots=True)
class EvalReport:
    method: str
    total: int
    correct: int
    in_scope: int
    in_scope_correct: int
    out_of_scope: int
    out_of_scope_refused: int
    latencies_ms: list[float] = field(repr=False)
    per_agent: dict[str, dict[str, float]]
    confusions: list[tuple[str, str, int]]
    paths: dict[str, int]

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def in_scope_accuracy(self) -> float:
        return self.in_scope_correct / self.in_scope if self.in_scope else 0.0

    @property
    def out_of_scope_recall(self) -> float | None:
        return self.out_of_scope_refused / self.out_of_scope if self.out_of_scope else None

    def latency(self, percentile: float) -> float:
        return float(np.percentile(self.latencies_ms, percentile)) if self.latencies_ms else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "queries": self.total,
            "accuracy": self.accuracy,
            "inScopeAccuracy": self.in_scope_accuracy,
            "outOfScopeRecall": self.out_of_scope_recall,
            "latencyMs": {"p50": self.latency(50), "p99": self.latency(99)},
            "paths": self.paths,
            "perAgent": self.per_agent,
            "confusions": [{"expected": e, "got": g, "count": n} for e, g, n in self.confusions],
        }

    def format(self, *, agents: int = 10) -> str:
        lines = [
            f"method          {self.method}",
            f"queries         {self.total} ({self.in_scope} in scope, {self.out_of_scope} out of scope)",
            f"accuracy        {self.accuracy:.2%}",
            f"in-scope acc.   {self.in_scope_accuracy:.2%}",
        ]
        if self.out_of_scope_recall is not None:
            lines.append(f"out-of-scope    {self.out_of_scope_recall:.2%} recall (refused)")
        lines.append(f"latency         p50 {self.latency(50):.2f} ms, p99 {self.latency(99):.2f} ms")
        if len(self.paths) > 1 or self.method not in self.paths:
            lines.append("decided by      " + ", ".join(f"{p} {n}" for p, n in sorted(self.paths.items())))
        worst = sorted(self.per_agent.items(), key=lambda item: item[1]["f1"])[:agents]
        lines.append(f"per agent (the {len(worst)} weakest of {len(self.per_agent)})")
        for agent, stats in worst:
            lines.append(
                f"  {agent:<40} precision {stats['precision']:.2%}  recall {stats['recall']:.2%}"
                f"  support {int(stats['support'])}"
            )
        if self.confusions:
            lines.append("most frequent confusions (expected -> got)")
            lines.extend(f"  {n:>4}  {e} -> {g}" for e, g, n in self.confusions[:agents])
        return "\n".join(lines)


async def evaluate(router: Router, queries: Sequence[LabelledQuery], *, method: str = "") -> EvalReport:
    """Route every query one at a time (latency is per query, as a caller sees it) and score."""
    decisions: list[Decision] = []
    latencies: list[float] = []
    for query in queries:
        start = time.perf_counter()
        decisions.append(await router.route(query.text))
        latencies.append((time.perf_counter() - start) * 1000)
    return score(queries, decisions, latencies, method=method or getattr(router, "method", "router"))


def score(
    queries: Sequence[LabelledQuery],
    decisions: Sequence[Decision],
    latencies_ms: Sequence[float],
    *,
    method: str,
) -> EvalReport:
    none = "(no agent)"
    pairs = [(q.agent or none, d.agent_id or none) for q, d in zip(queries, decisions, strict=True)]
    expected = Counter(e for e, _ in pairs)
    predicted = Counter(g for _, g in pairs)
    hits = Counter(e for e, g in pairs if e == g)
    per_agent: dict[str, dict[str, float]] = {}
    for agent in sorted(set(expected) | set(predicted)):
        if agent == none:
            continue
        precision = hits[agent] / predicted[agent] if predicted[agent] else 0.0
        recall = hits[agent] / expected[agent] if expected[agent] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_agent[agent] = {"precision": precision, "recall": recall, "f1": f1, "support": expected[agent]}
    confusions = Counter((e, g) for e, g in pairs if e != g).most_common()
    in_scope = [(e, g) for e, g in pairs if e != none]
    return EvalReport(
        method=method,
        total=len(pairs),
        correct=sum(hits.values()),
        in_scope=len(in_scope),
        in_scope_correct=sum(1 for e, g in in_scope if e == g),
        out_of_scope=expected[none],
        out_of_scope_refused=hits[none],
        latencies_ms=list(latencies_ms),
        per_agent=per_agent,
        confusions=[(e, g, n) for (e, g), n in confusions],
        paths=dict(Counter(d.method for d in decisions)),
    )
