"""Vector routing: embed the query, score agents against the capability index, decide or abstain.

Decision rules, measured on the validation splits of CLINC150 and Banking77 with 10 examples
per intent (bench/router_rules.py; all-MiniLM-L6-v2, top-1 accuracy on val)::

    rule         CLINC150 intents  Banking77
    vote (LMOS)  84.1%             79.9%       top-5 nearest examples vote
    nearest      83.1%             80.1%       best single example
    centroid     89.2%             80.3%       mean of a capability's examples and description
    classifier   92.6%             84.3%       multinomial logistic regression on the examples

``classifier`` is the default while the index is small enough to refit in well under a second
after a change; past ``classifier_max_rows`` texts the router uses ``centroid``, which updates
incrementally and searches through the ANN index.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from wot_agents import AgentDescription, RoutingError

from ._decision import AgentFilter, Decision, Message, agent_key
from ._embedders import CachedEmbedder, Embedder, EmbeddingCache, get_embedder
from ._index import CapabilityIndex, IndexedAgent

__all__ = ["DEFAULT_THRESHOLDS", "RULES", "Ranked", "VectorRouter", "calibrate_threshold"]

RULES = ("classifier", "centroid", "nearest", "vote")

#: Abstention thresholds calibrated on CLINC150's validation split (150 intent agents, 10 examples
#: each; its out-of-scope val queries) to refuse 90% of them: on the test split that refused 86.1%
#: of out-of-scope queries with MiniLM + classifier (bench/router_bench.py). Scores depend on the
#: agent set: calibrate for yours with ``calibrate_threshold`` or ``router eval --calibrate``.
DEFAULT_THRESHOLDS: dict[tuple[str, str], float] = {
    ("all-MiniLM-L6-v2", "classifier"): 0.338,
    ("all-MiniLM-L6-v2", "centroid"): 0.4135,
    ("wordllama-l2-supercat-256", "classifier"): 0.2818,
    ("wordllama-l2-supercat-256", "centroid"): 0.4368,
}

#: An agent in a ranking: the agent, its score and its best capability's number (-1: the agent itself).
Ranked = tuple[IndexedAgent, float, int]


def calibrate_threshold(out_of_scope_scores: Sequence[float], recall: float = 0.85) -> float:
    """The lowest threshold that refuses at least ``recall`` of these out-of-scope scores.

    Calibrate on held-out data (a validation split), never on the queries you then report.
    """
    scores = np.sort(np.asarray(out_of_scope_scores, dtype=np.float64))
    if not len(scores):
        raise ValueError("calibration needs out-of-scope scores")
    position = int(np.ceil(recall * len(scores)))
    return float(np.nextafter(scores[position - 1], np.inf)) if position > 0 else float(scores[0])


class _Classifier:
    """Logistic regression over the indexed texts, one class per capability, refit when the index changes."""

    def __init__(self, strength: float) -> None:
        self.strength = strength
        self.version = -1
        self.weights: npt.NDArray[np.float32] | None = None
        self.bias: npt.NDArray[np.float32] | None = None
        self.owner: npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)
        self.label: npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)

    def fit(
        self, vectors: npt.NDArray[np.float32], owner: npt.NDArray[np.int32], label: npt.NDArray[np.int32]
    ) -> bool:
        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError as exc:
            raise RoutingError("the classifier rule needs the 'router' extra (scikit-learn)") from exc

        pairs = np.stack([owner, label], axis=1)
        classes, target = np.unique(pairs, axis=0, return_inverse=True)
        if len(classes) < 2:
            self.weights = None
            return False
        model = LogisticRegression(C=self.strength, max_iter=1000)
        model.fit(vectors, target.ravel())
        self.weights = np.ascontiguousarray(model.coef_.T, dtype=np.float32)
        self.bias = model.intercept_.astype(np.float32)
        self.owner, self.label = classes[:, 0].astype(np.int32), classes[:, 1].astype(np.int32)
        return True

    def scores(
        self, query: npt.NDArray[np.float32], allowed: npt.NDArray[np.bool_] | None
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """Softmax probabilities over the allowed capabilities, with their owners and labels."""
        assert self.weights is not None and self.bias is not None
        logits = (query @ self.weights + self.bias).astype(np.float64)
        owner, label = self.owner, self.label
        if allowed is not None:
            keep = allowed[owner]
            logits, owner, label = logits[keep], owner[keep], label[keep]
        if not len(logits):
            return logits, owner, label
        probabilities = np.exp(logits - logits.max())
        return probabilities / probabilities.sum(), owner, label


class VectorRouter:
    """Routes by semantic similarity between the query and the agents' indexed texts.

    ``threshold``: an agent scoring below it is not chosen (abstention); ``None`` takes the
    calibrated default for the embedder and rule, or never abstains when there is none.
    """

    method = "vector"

    def __init__(
        self,
        embedder: Embedder | str = "minilm",
        *,
        rule: str = "classifier",
        threshold: float | None = None,
        cache: EmbeddingCache | None = None,
        where: AgentFilter | None = None,
        ann_threshold: int = 20_000,
        classifier_max_rows: int = 20_000,
        classifier_strength: float = 50.0,
        top: int = 5,
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
        self.embedder = get_embedder(embedder) if isinstance(embedder, str) else embedder
        indexed: Embedder = CachedEmbedder(self.embedder, cache) if cache is not None else self.embedder
        self.index = CapabilityIndex(indexed, ann_threshold=ann_threshold)
        self.rule = rule
        self.threshold = (
            threshold if threshold is not None else DEFAULT_THRESHOLDS.get((self.embedder.name, rule))
        )
        self.where = where or AgentFilter()
        self.top = top
        self.classifier_max_rows = classifier_max_rows
        self._classifier = _Classifier(classifier_strength)
        self._fit_lock = threading.Lock()

    # -- agents ---------------------------------------------------------------------------------

    async def add(self, agents: Sequence[AgentDescription]) -> int:
        """Index new agents and re-index changed ones (only those are embedded again)."""
        return await asyncio.to_thread(self.index.upsert, agents)

    async def remove(self, agent_id: str) -> bool:
        return await asyncio.to_thread(self.index.remove, agent_id)

    def _candidates(self, candidates: Sequence[AgentDescription] | None) -> list[str] | None:
        """Index candidates the router has not seen (same object = unchanged) and return their ids."""
        if candidates is None:
            return None
        unseen = [
            agent
            for agent in candidates
            if (known := self.index.get(agent_key(agent))) is None or known.description_model is not agent
        ]
        if unseen:
            self.index.upsert(unseen)
        return [agent_key(agent) for agent in candidates]

    # -- routing --------------------------------------------------------------------------------

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        return np.ascontiguousarray(self.embedder.embed([text])[0], dtype=np.float32)

    def effective_rule(self) -> str:
        if self.rule == "classifier" and self.index.table("texts").alive > self.classifier_max_rows:
            return "centroid"
        return self.rule

    def rank(
        self, query: npt.NDArray[np.float32], allowed: npt.NDArray[np.bool_] | None, rule: str | None = None
    ) -> list[Ranked]:
        """Agents by decreasing score under a rule (best capability noted), at most ``top`` of them."""
        rule = rule or self.effective_rule()
        if rule == "classifier" and self._fitted():
            probabilities, owner, label = self._classifier.scores(query, allowed)
            return self._sum_per_agent(owner, probabilities, label)
        if rule in ("classifier", "centroid"):
            _, sims, owner, label = self.index.search("centroids", query, 64, allowed)
            return self._aggregate(owner, sims, label)
        if rule == "nearest":
            _, sims, owner, label = self.index.search("texts", query, 64, allowed)
            return self._aggregate(owner, sims, label)
        _, sims, owner, label = self.index.search("texts", query, self.top, allowed)
        return self._vote(owner, sims, label)

    def _fitted(self) -> bool:
        """Refit the classifier if the index changed since the last fit (once, under a lock)."""
        with self._fit_lock:
            version = self.index.version
            if self._classifier.version != version:
                table = self.index.table("texts")
                alive = np.flatnonzero(table.owner[: table.size] >= 0)
                self._classifier.fit(table.vectors[alive], table.owner[alive], table.label[alive])
                self._classifier.version = version
            return self._classifier.weights is not None

    def _aggregate(self, owner: Any, scores: Any, label: Any) -> list[Ranked]:
        """Per agent: the best of its rows' similarities (``top`` agents from top-k rows)."""
        best: dict[int, tuple[float, int]] = {}
        for slot, score, number in zip(owner.tolist(), scores.tolist(), label.tolist(), strict=True):
            if slot not in best or score > best[slot][0]:
                best[slot] = (score, number)
        ranked = sorted(best.items(), key=lambda item: -item[1][0])[: self.top]
        return [(self.index.agent_at(slot), value, int(number)) for slot, (value, number) in ranked]

    def _sum_per_agent(self, owner: Any, probabilities: Any, label: Any) -> list[Ranked]:
        """Per agent: the sum of its capabilities' probabilities; vectorised, as every class is scored."""
        if not len(owner):
            return []
        totals = np.bincount(owner, weights=probabilities)
        present = np.zeros(len(totals), dtype=bool)
        present[owner] = True
        totals[~present] = -1.0
        k = min(self.top, int(present.sum()))
        top = np.argpartition(-totals, k - 1)[:k]
        ranked: list[Ranked] = []
        for slot in top[np.argsort(-totals[top], kind="stable")].tolist():
            mine = owner == slot
            number = int(label[mine][np.argmax(probabilities[mine])])
            ranked.append((self.index.agent_at(slot), float(totals[slot]), number))
        return ranked

    def _vote(self, owner: Any, sims: Any, label: Any) -> list[Ranked]:
        """LMOS's rule: the agent owning most of the top-k nearest texts; ties go to higher similarity."""
        votes: dict[int, list[float]] = {}
        for slot, sim, number in zip(owner.tolist(), sims.tolist(), label.tolist(), strict=True):
            entry = votes.setdefault(slot, [0.0, 0.0, sim, number])
            entry[0] += 1
            entry[1] += sim
        ranked = sorted(votes.items(), key=lambda item: (-item[1][0], -item[1][1]))
        return [(self.index.agent_at(slot), entry[1] / entry[0], int(entry[3])) for slot, entry in ranked]

    def decide(self, ranking: Sequence[Ranked], method: str | None = None) -> Decision:
        method = method or self.method
        summary = tuple((agent.id, float(score)) for agent, score, _ in ranking)
        if not ranking:
            return Decision(None, 0.0, "no candidate agent passed the filters", method, ranking=summary)
        agent, score, number = ranking[0]
        capability = agent.capabilities[number] if 0 <= number < len(agent.capabilities) else None
        what = (
            f"capability '{capability.name}' of agent '{agent.title}'"
            if capability
            else f"agent '{agent.title}'"
        )
        if self.threshold is not None and score < self.threshold:
            reason = f"best match {what} scored {score:.3f}, below the threshold {self.threshold:.3f}"
            return Decision(None, float(score), reason, method, ranking=summary)
        reason = f"best match {what} by {self.effective_rule()} (score {score:.3f})"
        return Decision(
            agent.id, float(score), reason, method, capability.id if capability else None, summary
        )

    def route_sync(
        self,
        query: str,
        candidates: Sequence[AgentDescription] | None = None,
        where: AgentFilter | None = None,
    ) -> Decision:
        """The blocking body of :meth:`route` (benchmarks call it directly)."""
        if not query.strip():
            raise RoutingError("cannot route an empty query")
        allowed = self.index.allowed_mask(self._candidates(candidates), where or self.where)
        return self.decide(self.rank(self.embed_query(query), allowed))

    async def route(
        self,
        query: str,
        history: Sequence[Message] = (),
        candidates: Sequence[AgentDescription] | None = None,
        *,
        where: AgentFilter | None = None,
    ) -> Decision:
        """Choose among ``candidates`` (default: every indexed agent) passing ``where``.

        The history is not embedded: the latest query carries the intent, and mixing earlier turns
        into one vector blurs it. The LLM paths read the history.
        """
        return await asyncio.to_thread(self.route_sync, query, candidates, where)

    async def aclose(self) -> None:
        """Nothing to release: the embedding cache belongs to whoever passed it in."""
