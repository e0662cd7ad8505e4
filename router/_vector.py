"""Vector routing: embed the query, score agents against the capability index, decide or abstain.

Decision rules, measured on the validation splits of CLINC150 and Banking77 with 10 examples
per intent (bench/router_rules.py; all-MiniLM-L6-v2, top-1 accuracy on val)::

    rule         CLINC150 intents  Banking77
    vote (LMOS)  84.1%             79.9%       top-5 nearest examples vote
    nearest      83.1%             80.1%       best single example
    centroid     89.2%             80.3%       mean of a capability's examples and description
    classifier   92.6%             84.3%       multinomial logistic regression on the examples

``classifier`` is the default. It is refitted in the background after agents change (seconds at
150 agents, ~12 s for one more agent at 1,000: router/_classifier.py), so past
``classifier_max_rows`` texts the router uses ``centroid``, which updates incrementally and
searches through the ANN index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from wot_agents import AgentDescription, ChatMessage, RoutingError

from ._base import RouterBase, check_query, conversation
from ._classifier import FitAborted, FitWorker, Model
from ._decision import AgentFilter, Decision, agent_key
from ._embedders import Embedder, EmbeddingCache, get_embedder, with_cache
from ._index import CapabilityIndex, IndexedAgent, IndexView

__all__ = [
    "DEFAULT_SIMILARITY",
    "DEFAULT_THRESHOLDS",
    "DESCRIBED_ONLY_FLOOR",
    "FENCE",
    "OUT_OF_SCOPE",
    "RULES",
    "Ranked",
    "VectorRouter",
    "calibrate_threshold",
]

RULES = ("classifier", "centroid", "nearest", "vote")

#: Not a default any more (the gates come from the agents served: ``VectorRouter.held_out_gates``);
#: kept to reproduce earlier figures. Abstention thresholds calibrated on CLINC150's validation
#: split (150 intent agents, 10 examples each; its out-of-scope val queries) to refuse 90% of
#: them (MiniLM + classifier: together with its DEFAULT_SIMILARITY gate). Scores depend on the
#: agent set: calibrate for yours with ``calibrate_threshold`` or ``router eval --calibrate``.
DEFAULT_THRESHOLDS: dict[tuple[str, str], float] = {
    ("all-MiniLM-L6-v2", "classifier"): 0.2629,
    ("all-MiniLM-L6-v2", "centroid"): 0.4135,
    ("wordllama-l2-supercat-256", "classifier"): 0.2387,
    ("wordllama-l2-supercat-256", "centroid"): 0.4368,
    ("multilingual-e5-small-q4", "classifier"): 0.1292,
    ("all-MiniLM-L6-v2+multilingual-e5-small-q4", "classifier"): 0.1868,
}

log = logging.getLogger(__name__)

#: Not a default any more either (see above). The other abstention gate: the chosen agent's closest
#: text must have at least this
#: cosine similarity to the query. A probability threshold does not transfer across agent-set sizes
#: (with 3 agents the best never scores under 1/3, so the one above never abstains), a similarity
#: does. Calibrated on CLINC150 val with the classifier's threshold above so that together they
#: refuse 90% of its out-of-scope queries, the similarity doing 0.9 of that alone. On TEST
#: (bench/router_gate.py, MiniLM + classifier), in-scope accuracy / out-of-scope recall:
#: 150 agents 86.73% / 85.50% (the probability alone: 86.18% / 85.40%); random subsets of
#: 3 agents 94.33% / 92.97% (probability alone: 99.94% / 0.00%), of 10: 93.05% / 82.76%.
#: wordllama, calibrated the same way: 150 agents 77.18% / 86.60% (probability alone 78.33% /
#: 83.10%), 3 agents 87.06% / 95.19% (99.72% / 0.00%), 10 agents 84.63% / 87.70% (95.73% / 41.94%).
#: e5: 150 agents 84.29% / 85.90%, 3 agents 91.06% / 89.97%, 10 agents 89.77% / 77.34%.
#: minilm+e5: 150 agents 88.64% / 83.80%, 3 agents 94.28% / 92.68%, 10 agents 93.48% / 81.57%.
DEFAULT_SIMILARITY: dict[tuple[str, str], float] = {
    ("all-MiniLM-L6-v2", "classifier"): 0.408,
    ("wordllama-l2-supercat-256", "classifier"): 0.4257,
    ("multilingual-e5-small-q4", "classifier"): 0.8707,
    ("all-MiniLM-L6-v2+multilingual-e5-small-q4", "classifier"): 0.6311,
}

#: How many held-out similarities an agent's own mean counts against all agents' mean, for its
#: similarity gate (:meth:`VectorRouter.held_out_gates`).
SHRINK = 5.0

#: A floor for the held-out gates, opt-in (``VectorRouter(gate_fence=FENCE)``): in interquartile
#: ranges under the lower quartile of the held-out deviations (Tukey's fence), so that a few
#: outlying examples (terse, or unlike the rest of their agent), which set the 0.5% quantile, do
#: not drag every gate far below where in-scope queries fall. 2 was the lowest of 1.5, 2, 2.5, 3
#: that cost no val split more than 1 point against no gates (1.5 cost SNIPS 2.7). On TEST it
#: took BANKING77-OOS out-of-domain recall from 62.0% to 91.0% (in scope -0.15), but refused
#: 3.2% of LMOS's in-scope queries (0.6% without): LMOS's agents carry ~270 examples each, near
#: duplicates among them narrow the quartiles, and its test queries are phrased unlike them (its
#: val split, seen rows, could not show it). So it is not the default.
FENCE = 2.0

#: The similarity gate of agents described only by names and descriptions when no agent has examples
#: to measure one on: a floor that refuses only queries unrelated to every description. Chosen on
#: the zero-shot val splits (bench/router_bench.py --table --split val): at 0.1 it refused at most
#: 1.0% of their in-scope queries (SNIPS, LMOS), at 0.15 6.7% of SNIPS's.
DESCRIBED_ONLY_FLOOR: dict[str, float] = {
    "all-MiniLM-L6-v2": 0.1,
    "all-MiniLM-L6-v2-int8": 0.1,  # its int8 quantisation: the same embeddings to a cosine of ~0.99
}

#: An agent in a ranking: the agent, its score and its best capability's number (-1: the agent itself).
Ranked = tuple[IndexedAgent, float, int]

#: The id of the pseudo-agent that holds a router's out-of-scope examples
#: (:meth:`VectorRouter.set_out_of_scope`). It is indexed like an agent but never ranked.
OUT_OF_SCOPE = "urn:wot-agents:router:out-of-scope"


def calibrate_threshold(out_of_scope_scores: Sequence[float], recall: float = 0.85) -> float:
    """The lowest threshold that refuses at least ``recall`` of these out-of-scope scores.

    Calibrate on held-out data (a validation split), never on the queries you then report.
    """
    scores = np.sort(np.asarray(out_of_scope_scores, dtype=np.float64))
    if not len(scores):
        raise ValueError("calibration needs out-of-scope scores")
    position = int(np.ceil(recall * len(scores)))
    return float(np.nextafter(scores[position - 1], np.inf)) if position > 0 else float(scores[0])


#: How many of the lowest held-out deviations the exponential tail of :func:`low_quantile` is
#: fitted to, and how many values it needs at least (its points a fifth of them at most): from a
#: dozen values, a 0.5% quantile would be extrapolated five tail scales under the tenth lowest,
#: a gate so low that three agents with four examples each took "what is the boiling point of
#: tungsten" (tests/runtime/test_chat.py).
TAIL_POINTS = 10
TAIL_SAMPLE = 50


def low_quantile(values: npt.NDArray[np.float64], q: float) -> float:
    """The ``q`` quantile of ``values`` (``q`` small), extrapolated when they are too few to show it.

    With fewer than ``1 / q - 1`` values (199 at the default 0.5%), the ``q`` quantile lies below
    their minimum, and numpy's interpolated quantile, between the two lowest, refuses about
    1.5 / (n + 1) of new in-scope queries instead of ``q`` (1.5% for 100 examples: 3x the share
    chosen). So a small sample's quantile comes from an exponential tail fitted to its
    :data:`TAIL_POINTS` lowest values (their mean distance under the next one; never above the
    interpolated quantile), given at least :data:`TAIL_SAMPLE` values; fewer say too little of
    their tail, and keep numpy's quantile. Chosen on the val splits (bench/router_bench.py --table
    --split val): it changed only the sets with 50-198 examples, SNIPS (7 agents, 70 examples)
    -0.71 -> 0.00 points against no gates, CLINC banking -0.8 -> -0.4 and credit cards -0.8 ->
    0.0, their out-of-domain recall 98.0% -> 95.0% and 99.5% -> 99.0%. numpy's unbiased order
    statistic (``method="weibull"``) for every size would have lowered the larger sets' gates too
    (BANKING77-OOS val out-of-domain recall 74.0% -> 68.5%).
    """
    interpolated = float(np.quantile(values, q))
    if q * (len(values) + 1) >= 1 or len(values) < TAIL_SAMPLE:
        return interpolated
    lowest = np.sort(values)[: TAIL_POINTS + 1]
    scale = float(np.mean(lowest[TAIL_POINTS] - lowest[:TAIL_POINTS]))
    tail = float(lowest[TAIL_POINTS] - scale * np.log((TAIL_POINTS + 1) / ((len(values) + 1) * q)))
    return min(interpolated, tail)


class VectorRouter(RouterBase):
    """Routes by semantic similarity between the query and the agents' indexed texts.

    Abstention, by default: the chosen agent's closest text must be about as similar to the query
    as the agents' own held-out examples are to them (:meth:`held_out_gates`, ``gate_quantile``
    of them refused), or, for an agent described only by names and descriptions, as examples are to
    their descriptions. The gates come from the agents served, not from a benchmark, so they hold
    on agent sets never tuned on. ``threshold``: instead, an agent scoring below it is not chosen
    (in the rule's units); ``similarity``: nor one whose closest text is less similar to the query
    than this. Giving either turns the held-out gates off; ``threshold=0`` never abstains.
    :data:`DEFAULT_THRESHOLDS` / :data:`DEFAULT_SIMILARITY` are the gates calibrated on CLINC150
    that earlier releases applied by default.

    History: a short query (at most ``follow_up_words`` words) after a user turn is often a
    follow-up that means little alone ("how long will that take?"), so its embedding is mixed
    with the last user turn's, weighted ``history_weight`` (0: history ignored). On two-turn
    conversations made from LMOS test rows (bench/router_history.py) that took follow-ups from
    19.2% to 70.8% routed right, topic switches from 100% to 99.54%; single turns are unchanged.
    The weight is the largest of those tried on val that kept switches at 99% or more.

    The classifier rule is refitted in a child process after agents change, once the changes have
    paused for ``refit_delay`` seconds (a burst of registrations costs one fit), while the previous
    model keeps answering. Agents it was not trained on are ranked by centroid until the refit
    lands (see :meth:`rank`); removed agents are never ranked. Close the router (``aclose`` or
    ``async with``) to stop a refit in flight.
    """

    method = "vector"

    def __init__(
        self,
        embedder: Embedder | str = "minilm",
        *,
        rule: str = "classifier",
        threshold: float | None = None,
        similarity: float | None = None,
        cache: EmbeddingCache | None = None,
        where: AgentFilter | None = None,
        ann_threshold: int = 20_000,
        classifier_max_rows: int = 20_000,
        classifier_strength: float = 50.0,
        refit_delay: float = 0.2,
        history_weight: float = 0.5,
        follow_up_words: int = 6,
        top: int = 5,
        gate_quantile: float = 0.005,
        gate_fence: float | None = None,
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
        self.embedder = get_embedder(embedder) if isinstance(embedder, str) else embedder
        indexed = with_cache(self.embedder, cache) if cache is not None else self.embedder
        self.index = CapabilityIndex(indexed, ann_threshold=ann_threshold)
        self.rule = rule
        #: With neither gate given, the similarity gate is set from the agents served: the
        #: ``gate_quantile`` of their held-out similarities (see :meth:`held_out_gates`).
        self.gate_quantile = gate_quantile if threshold is None and similarity is None else None
        #: Opt-in floor of the held-out gates (:data:`FENCE`); ``None``: the quantile alone.
        self.gate_fence = gate_fence
        self.threshold = threshold
        self.similarity = similarity
        #: The held-out gates: (index version, gate per slot, described-only gate, slot versions).
        self._held_out: tuple[int, dict[int, float], float | None, npt.NDArray[np.int64]] = (
            -1,
            {},
            None,
            np.zeros(0, dtype=np.int64),
        )
        self.where = where or AgentFilter()
        self.history_weight = history_weight
        self.follow_up_words = follow_up_words
        self.top = top
        self.classifier_max_rows = classifier_max_rows
        self.classifier_strength = classifier_strength
        self.refit_delay = refit_delay
        self._model: Model | None = None
        self._fitted_version = -1  # the index version the model (or its absence) reflects
        self._fit_lock = threading.Lock()
        self._abort = threading.Event()  # set on close: a fit in flight is abandoned (its process killed)
        self._refit_task: asyncio.Task[None] | None = None
        #: Waits for the fitting process in the background (the fit itself runs in that process).
        self._refit_thread = ThreadPoolExecutor(1, "wot-agents-refit")
        self._worker = FitWorker()
        self._closed = False

    # -- agents ---------------------------------------------------------------------------------

    async def _add(self, agents: Sequence[AgentDescription]) -> int:
        """Index new agents and re-index changed ones (only those are embedded again)."""
        changed = await asyncio.to_thread(self.index.upsert, agents)
        self._schedule_refit()
        return changed

    async def remove(self, agent_id: str) -> bool:
        removed = await asyncio.to_thread(self.index.remove, agent_id)
        self._schedule_refit()
        return removed

    async def set_out_of_scope(self, examples: Sequence[str]) -> None:
        """Teach the classifier queries that no agent should take; an empty list forgets them.

        They become a class of their own (the pseudo-agent :data:`OUT_OF_SCOPE`, never ranked, in
        every softmax whatever the candidates and filters), and an agent's classifier score becomes
        its probability minus that class's: a query like them scores low, under 0 when the class is
        likelier, and meets the threshold. Calibrate the threshold with the examples in place. Like
        :meth:`add`, they count once the background refit has learnt them (:meth:`refitted`). The
        CLINC150 paper calls this "oos-train"; figures in docs/architecture.md. The similarity
        rules ignore the examples.
        """
        texts = [text for text in examples if text.strip()]
        if not texts:
            await self.remove(OUT_OF_SCOPE)
            return
        pseudo = {
            "@context": [
                "https://www.w3.org/2022/wot/td/v1.1",
                {"lmos": "https://eclipse.dev/lmos/protocol/v1"},
            ],
            "id": OUT_OF_SCOPE,
            "title": "no agent",
            "lmos:capabilities": [
                {"id": f"{OUT_OF_SCOPE}:examples", "name": "out of scope", "examples": texts}
            ],
            "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
            "security": "nosec_sc",
        }
        await self.add([AgentDescription.from_dict(pseudo)])

    def _out_of_scope_slot(self, view: IndexView | None = None) -> int | None:
        indexed = (view or self.index.view()).get(OUT_OF_SCOPE)
        return indexed.slot if indexed is not None else None

    def _candidates(self, candidates: Sequence[AgentDescription] | None) -> list[str] | None:
        """Index candidates the router has not seen (same object = unchanged) and return their ids.

        Never a description the router removed or replaced since (``revive=False``): the
        candidates were taken before this route ran, and the agent may have left or changed
        meanwhile (the runtime teaches the router each catalog change while turns wait to be
        routed). Such an agent is simply not a candidate, or is ranked as it is indexed now.
        """
        if candidates is None:
            return None
        unseen = [
            agent
            for agent in candidates
            if ((known := self.index.get(agent_key(agent))) is None or known.description_model is not agent)
            and not self.index.retired(agent)
        ]
        if unseen:
            self.index.upsert(unseen, revive=False)
        return [agent_key(agent) for agent in candidates]

    # -- routing --------------------------------------------------------------------------------

    def embed_query(self, text: str, history: Sequence[ChatMessage] = ()) -> npt.NDArray[np.float32]:
        """The query's embedding; a short follow-up's mixed with the last user turn's (see the class)."""
        context = self._context(text, history)
        if context is None:
            return np.ascontiguousarray(self.embedder.embed([text])[0], dtype=np.float32)
        query, previous = self.embedder.embed([text, context])
        mixed = query + self.history_weight * previous
        return np.ascontiguousarray(mixed / np.linalg.norm(mixed), dtype=np.float32)

    def _context(self, text: str, history: Sequence[ChatMessage]) -> str | None:
        if not self.history_weight or len(text.split()) > self.follow_up_words:
            return None
        users = [turn.content for turn in conversation(history) if turn.role == "user"]
        users = [content for content in users if content.strip()]
        return users[-1] if users else None

    def effective_rule(self) -> str:
        if self.rule == "classifier" and self.index.table("texts").alive > self.classifier_max_rows:
            return "centroid"
        return self.rule

    def rank(
        self,
        query: npt.NDArray[np.float32],
        allowed: npt.NDArray[np.bool_] | None,
        rule: str | None = None,
        view: IndexView | None = None,
    ) -> tuple[list[Ranked], str]:
        """Agents by decreasing score (best capability noted), at most ``top``, and the rule that ranked.

        The rule is ``rule`` (default: :meth:`effective_rule`), except that the classifier falls
        back to ``centroid`` while it has no model, or for an agent newer than its model. The
        ranking is among the agents of ``view`` (default: now) still indexed as they were there;
        ``allowed`` is over its slots.
        """
        rule = rule or self.effective_rule()
        view = view or self.index.view()
        slots = len(view.slot_versions)
        if allowed is not None:
            allowed = _fit(allowed, slots)
        rival = self._out_of_scope_slot(view)
        if rule == "classifier":
            model = self._current_model()
            if model is not None:
                return self._rank_classifier(model, query, allowed, rival, view)
            rule = "centroid"
        if rival is not None:  # the similarity rules never see the out-of-scope examples
            allowed = np.ones(slots, dtype=bool) if allowed is None else allowed.copy()
            allowed[rival] = False
        if rule == "centroid":
            _, sims, owner, label = self.index.search("centroids", query, 64, allowed, view)
            return self._aggregate(owner, sims, label, view), rule
        if rule == "nearest":
            _, sims, owner, label = self.index.search("texts", query, 64, allowed, view)
            return self._aggregate(owner, sims, label, view), rule
        _, sims, owner, label = self.index.search("texts", query, self.top, allowed, view)
        return self._vote(owner, sims, label, view), rule

    def _rank_classifier(
        self,
        model: Model,
        query: npt.NDArray[np.float32],
        allowed: npt.NDArray[np.bool_] | None,
        rival: int | None,
        view: IndexView,
    ) -> tuple[list[Ranked], str]:
        """The classifier's ranking, or the centroid ranking when an agent it never saw matches best.

        Between a change and its refit the model knows only the agents it was trained on. Agents
        added or changed since are compared by centroid similarity: when one of them is the best
        centroid match, the centroid ranking answers; otherwise the model ranks the agents it knows.
        Classes of removed agents are dropped, so a removed agent is never chosen. The ``rival``
        slot (the out-of-scope examples) takes part in every softmax, whatever the filters, and
        its probability is taken off every agent's.
        """
        current = view.slot_versions
        scope = current >= 0
        if allowed is not None:
            scope &= _fit(allowed, len(scope))
        if rival is not None:
            scope[rival] = False
        known = model.known(current)
        if (scope & ~known).any():
            _, sims, owner, label = self.index.search("centroids", query, 64, scope, view)
            by_centroid = self._aggregate(owner, sims, label, view)
            if by_centroid and not known[by_centroid[0][0].slot]:
                return by_centroid, "centroid"
        if rival is not None:
            scope[rival] = True
        # a model fitted after the view was taken may know slots the view does not have
        usable = _fit(scope & known, max(len(scope), len(model.slot_versions)))
        probabilities, owner, label = model.probabilities(query, usable)
        return self._sum_per_agent(owner, probabilities, label, view, rival), "classifier"

    # -- the classifier's background refit ------------------------------------------------------

    @property
    def refit_pending(self) -> bool:
        """Whether the classifier does not yet reflect the latest agent changes."""
        return self.effective_rule() == "classifier" and self._fitted_version != self.index.version

    def _current_model(self) -> Model | None:
        """The fitted model, stale or not; with no model to serve yet, one is fitted here and now."""
        if self._model is None and self.refit_pending and not self._closed:
            self._refit()
        return self._model

    def _refit(self) -> None:
        """Fit on the index as it is now, starting from the previous model (blocking: it waits for
        the fitting process, :class:`~router._classifier.FitWorker`, so the GIL stays free)."""
        with self._fit_lock:
            data = self.index.snapshot()
            if data.version == self._fitted_version or self._closed:
                return
            try:
                model = self._worker.fit(data, self.classifier_strength, self._model, self._abort)
            except FitAborted:
                return
            # Never replace a model with one of an older index (a first fit racing a refit).
            if data.version > self._fitted_version:
                self._model, self._fitted_version = model, data.version

    def _schedule_refit(self) -> None:
        """Start the background refit unless it is running, the router is closed or the model is current."""
        if self._closed or not self.refit_pending:
            return
        if self._refit_task is None or self._refit_task.done():
            self._refit_task = asyncio.get_running_loop().create_task(self._refit_when_quiet())

    async def _refit_when_quiet(self) -> None:
        """Wait until agents stop changing for ``refit_delay`` (at most 10 delays), then refit."""
        loop = asyncio.get_running_loop()
        first_change = loop.time()
        while not self._closed and self.refit_pending:
            version = self.index.version
            await asyncio.sleep(self.refit_delay)
            if self.index.version != version and loop.time() - first_change < 10 * self.refit_delay:
                continue
            try:
                await loop.run_in_executor(self._refit_thread, self._refit)
            except Exception:  # keep serving the old model; the next change or route tries again
                log.exception("refitting the classifier failed")
                return
            first_change = loop.time()

    def _aggregate(self, owner: Any, scores: Any, label: Any, view: IndexView) -> list[Ranked]:
        """Per agent: the best of its rows' similarities (``top`` agents from top-k rows)."""
        best: dict[int, tuple[float, int]] = {}
        for slot, score, number in zip(owner.tolist(), scores.tolist(), label.tolist(), strict=True):
            if slot not in best or score > best[slot][0]:
                best[slot] = (score, number)
        ranked = sorted(best.items(), key=lambda item: -item[1][0])[: self.top]
        return [(view.agent_at(slot), value, int(number)) for slot, (value, number) in ranked]

    def _sum_per_agent(
        self, owner: Any, probabilities: Any, label: Any, view: IndexView, rival: int | None = None
    ) -> list[Ranked]:
        """Per agent: the sum of its capabilities' probabilities, less the ``rival`` slot's (which
        is never ranked); vectorised, as every class is scored."""
        if not len(owner):
            return []
        totals = np.bincount(owner, weights=probabilities)
        present = np.zeros(len(totals), dtype=bool)
        present[owner] = True
        if rival is not None and rival < len(totals) and present[rival]:
            totals -= totals[rival]
            present[rival] = False
        totals[~present] = -np.inf
        k = min(self.top, int(present.sum()))
        if not k:
            return []
        top = np.argpartition(-totals, k - 1)[:k]
        ranked: list[Ranked] = []
        for slot in top[np.argsort(-totals[top], kind="stable")].tolist():
            mine = owner == slot
            number = int(label[mine][np.argmax(probabilities[mine])])
            ranked.append((view.agent_at(slot), float(totals[slot]), number))
        return ranked

    def _vote(self, owner: Any, sims: Any, label: Any, view: IndexView) -> list[Ranked]:
        """LMOS's rule: the agent owning most of the top-k nearest texts; ties go to higher similarity."""
        votes: dict[int, list[float]] = {}
        for slot, sim, number in zip(owner.tolist(), sims.tolist(), label.tolist(), strict=True):
            entry = votes.setdefault(slot, [0.0, 0.0, sim, number])
            entry[0] += 1
            entry[1] += sim
        ranked = sorted(votes.items(), key=lambda item: (-item[1][0], -item[1][1]))
        return [(view.agent_at(slot), entry[1] / entry[0], int(entry[3])) for slot, entry in ranked]

    def decide(
        self,
        ranked: tuple[Sequence[Ranked], str],
        method: str | None = None,
        similarity: float = 1.0,
        gate: float | None = None,
    ) -> Decision:
        """The best agent of a ranking, or none when its score is under the threshold or its
        ``similarity`` to the query under the similarity gate.

        ``threshold`` is on the scale of the router's rule, so it does not apply to a ranking by
        another rule (the classifier's centroid fallback for agents newer than its model).
        """
        ranking, rule = ranked
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
        if self.threshold is not None and rule == self.rule and score < self.threshold:
            reason = f"best match {what} scored {score:.3f}, below the threshold {self.threshold:.3f}"
            return Decision(None, float(score), reason, method, ranking=summary)
        gate = self.similarity if gate is None else gate
        if gate is not None and similarity < gate:
            reason = (
                f"best match {what}, but its closest example is only {similarity:.3f} similar to the"
                f" query, below {gate:.3f}"
            )
            return Decision(None, float(score), reason, method, ranking=summary)
        reason = f"best match {what} by {rule} (score {score:.3f})"
        return Decision(
            agent.id, float(score), reason, method, capability.id if capability else None, summary
        )

    def route_sync(
        self,
        query: str,
        candidates: Sequence[AgentDescription] | None = None,
        where: AgentFilter | None = None,
        history: Sequence[ChatMessage] = (),
    ) -> Decision:
        """The blocking body of :meth:`route` (benchmarks call it directly)."""
        check_query(query)
        ids = self._candidates(candidates)
        return self._route_ids(self.embed_query(query, history), ids, where or self.where)

    def route_many(
        self, turns: Sequence[tuple[str, Sequence[ChatMessage], Sequence[AgentDescription] | None]]
    ) -> list[Decision | RoutingError]:
        """:meth:`route_sync` for several turns (query, history, candidates) at once, blocking: every
        query (and follow-up context) is embedded in one call, so concurrent turns share one run of
        the model (the runtime batches its turns this way). A turn's mask is made once per
        candidates object. A turn that cannot be routed gets its error in its place."""
        texts: list[str] = []
        spans: list[tuple[int, bool] | None] = []
        for query, history, _ in turns:
            if not query.strip():
                spans.append(None)
                continue
            context = self._context(query, history)
            spans.append((len(texts), context is not None))
            texts.extend([query] if context is None else [query, context])
        vectors = self.embedder.embed(texts) if texts else None
        ids: dict[int, list[str] | None] = {}
        for _, _, candidates in turns:
            if id(candidates) not in ids:  # indexed before the view is taken
                ids[id(candidates)] = self._candidates(candidates)
        view = self.index.view()
        masks: dict[int, npt.NDArray[np.bool_] | None] = {}
        decisions: list[Decision | RoutingError] = []
        for (_, _, candidates), span in zip(turns, spans, strict=True):
            if span is None or vectors is None:
                decisions.append(RoutingError("cannot route an empty query"))
                continue
            start, mixed = span
            vector = vectors[start] + self.history_weight * vectors[start + 1] if mixed else vectors[start]
            if id(candidates) not in masks:
                masks[id(candidates)] = self.index.allowed_mask(ids[id(candidates)], self.where, view)
            unit = np.ascontiguousarray(vector / np.linalg.norm(vector), dtype=np.float32)
            decision = self._decide_in(unit, view, masks[id(candidates)])
            if decision is None:  # its best agent left during the batch: route it again, now
                decision = self._route_ids(unit, ids[id(candidates)], self.where)
            decisions.append(decision)
        return decisions

    def _route_ids(
        self, vector: npt.NDArray[np.float32], ids: Sequence[str] | None, where: AgentFilter | None
    ) -> Decision:
        """Decide among these agent ids (``None``: all) on a view of now; again on a newer view if
        the best agent left meanwhile (its texts may already belong to another agent)."""
        for _ in range(_ATTEMPTS):
            view = self.index.view()
            decision = self._decide_in(vector, view, self.index.allowed_mask(ids, where, view))
            if decision is not None:
                return decision
        return _unsettled(self.method)

    def route_vector(
        self, vector: npt.NDArray[np.float32], allowed: npt.NDArray[np.bool_] | None = None
    ) -> Decision:
        """Decide for a query already embedded (:meth:`embed_query`) among the ``allowed`` slots
        (``index.allowed_mask``; ``None``: every agent); benchmarks embed queries once this way."""
        for _ in range(_ATTEMPTS):
            decision = self._decide_in(vector, self.index.view(), allowed)
            if decision is not None:
                return decision
        return _unsettled(self.method)

    def _decide_in(
        self, vector: npt.NDArray[np.float32], view: IndexView, allowed: npt.NDArray[np.bool_] | None
    ) -> Decision | None:
        """:meth:`route_vector` on one view of the index; ``None`` when the best agent left while
        this ran (its similarity to the query can no longer be measured)."""
        ranked = self.rank(vector, allowed, view=view)
        if not ranked[0]:
            return self.decide(ranked)
        best = ranked[0][0][0]
        gate = self.similarity
        if gate is None and self.gate_quantile is not None:
            _, per_agent, described_only, measured = self._measured_gates()
            if best.examples and best.slot < len(measured):
                if measured[best.slot] != view.slot_versions[best.slot]:
                    return None  # the gates were set after it left (or before it came)
                gate = per_agent.get(best.slot, described_only)
            else:
                gate = described_only
        if gate is None:
            return self.decide(ranked)
        similarity = self.index.similarity(best.slot, vector, view)
        if similarity is None:
            return None
        return self.decide(ranked, similarity=similarity, gate=gate)

    def held_out_gates(self) -> tuple[dict[int, float], float | None]:
        """The similarity gates set from the agents served: one per agent with examples (by slot),
        and one for agents described only by names and descriptions (``None``: no gate).

        What an in-scope query's similarity to its agent looks like is measured on these very
        agents, leave-one-out: every example utterance compared with the rest of its agent, or with
        its agent's names and descriptions alone. An agent's gate is its typical similarity (the
        mean of its held-out similarities, shrunk towards all agents' mean, as ten examples say
        little) less the ``gate_quantile`` of every agent's deviations from its own mean (extrapolated
        for a small set: :func:`low_quantile`; with
        ``gate_fence``, no lower than that many interquartile ranges under their lower quartile:
        see :data:`FENCE`): each gate refuses about that share of the agent's in-scope
        queries, a tight agent's gate sits higher
        than a loose one's, and nothing comes from a dataset the router was not given (a constant
        from CLINC150 refused 37% of a described-only set's in-scope queries). Recomputed when
        agents change.
        """
        _, per_agent, described_only, _ = self._measured_gates()
        return per_agent, described_only

    def _measured_gates(self) -> tuple[int, dict[int, float], float | None, npt.NDArray[np.int64]]:
        """:meth:`held_out_gates` with the index version and slot versions they were measured at
        (a gate by slot belongs to the agent that held the slot then)."""
        held_out = self._held_out
        if held_out[0] == self.index.version or self.gate_quantile is None:
            return held_out
        version, measured, by_slot, described = self.index.held_out_at(self._out_of_scope_slot())
        per_agent = {}
        if by_slot:
            overall = float(np.mean(np.concatenate(list(by_slot.values()))))
            typical = {
                slot: (float(sims.sum()) + SHRINK * overall) / (len(sims) + SHRINK)
                for slot, sims in by_slot.items()
            }
            deviations = np.concatenate([sims - typical[slot] for slot, sims in by_slot.items()])
            offset = low_quantile(deviations, self.gate_quantile)
            if self.gate_fence is not None:
                first, third = np.quantile(deviations, [0.25, 0.75])
                offset = max(offset, float(first - self.gate_fence * (third - first)))
            per_agent = {slot: mean + offset for slot, mean in typical.items()}
        described_only = low_quantile(described, self.gate_quantile) if len(described) else None
        if described_only is None:
            described_only = DESCRIBED_ONLY_FLOOR.get(self.embedder.name)
        held_out = version, per_agent, described_only, measured
        if version > self._held_out[0]:  # never replaced by one measured on an older index
            self._held_out = held_out
        return held_out

    def gate_scores(self, query: str) -> tuple[float, float]:
        """The best agent's score and its closest text's similarity to ``query``: what the two
        abstention gates compare, for calibrating either on held-out out-of-scope queries."""
        vector = self.embed_query(query)
        view = self.index.view()
        ranking, _ = self.rank(vector, self.index.allowed_mask(None, self.where, view), view=view)
        if not ranking:
            return 0.0, -1.0
        similarity = self.index.similarity(ranking[0][0].slot, vector, view)
        return float(ranking[0][1]), -1.0 if similarity is None else similarity

    def calibrate_gate(
        self, out_of_scope: Sequence[str], recall: float = 0.85, gate: str = "probability"
    ) -> float:
        """Set one abstention gate so that it refuses ``recall`` of these held-out out-of-scope
        queries, and return its value (blocking: it embeds every query).

        ``gate="probability"`` sets the score threshold, beside the similarity gate if there is
        one; ``gate="similarity"`` sets the similarity gate alone (better for a tuned model).
        """
        if gate not in ("probability", "similarity"):
            raise ValueError(f"unknown gate {gate!r}; choose probability or similarity")
        similarity = gate == "similarity"
        scores = [self.gate_scores(text)[similarity] for text in out_of_scope]
        calibrated = calibrate_threshold(scores, recall)
        if similarity:
            self.threshold, self.similarity, self.gate_quantile = None, calibrated, None
        else:
            self.threshold = calibrated
        return calibrated

    async def _route(
        self,
        query: str,
        history: Sequence[ChatMessage],
        candidates: Sequence[AgentDescription] | None,
        where: AgentFilter | None,
    ) -> Decision:
        """Choose among ``candidates`` (default: every indexed agent) passing ``where``.

        ``history`` (earlier turns, oldest first) only matters for a short follow-up: see the class.
        """
        decision = await asyncio.to_thread(self.route_sync, query, candidates, where, history)
        self._schedule_refit()  # candidates the router had not seen were indexed
        return decision

    async def refitted(self) -> None:
        """Wait until the classifier reflects every agent change so far (benchmarks, tests)."""
        while self.refit_pending and not self._closed:
            await asyncio.to_thread(self._refit)

    async def aclose(self) -> None:
        """Stop the background refit and wait for its thread; idempotent.

        The embedding cache belongs to whoever passed it in and stays open.
        """
        self._closed = True
        self._abort.set()
        task, self._refit_task = self._refit_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # the refit thread ends once a fit in flight notices the abort (its process is killed)
        await asyncio.to_thread(self._refit_thread.shutdown)
        await asyncio.to_thread(self._worker.close)


#: Views a route tries when its best agent keeps leaving while it is decided (each try means an
#: agent was removed meanwhile; the next view no longer has it).
_ATTEMPTS = 8


def _unsettled(method: str) -> Decision:
    return Decision(None, 0.0, "the agents kept changing while this query was routed; try again", method)


def _fit(mask: npt.NDArray[np.bool_], slots: int) -> npt.NDArray[np.bool_]:
    """``mask`` over ``slots`` slots. Agents added after the mask was made (an ``add`` that ran
    while a query was being embedded) were not among its candidates: they are not allowed."""
    if len(mask) == slots:
        return mask
    fitted = np.zeros(slots, dtype=bool)
    shared = min(slots, len(mask))
    fitted[:shared] = mask[:shared]
    return fitted
