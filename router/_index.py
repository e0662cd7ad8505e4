"""The capability index: every routable text of every agent, embedded, kept in step with the agents.

Two vector tables: one row per text (agent description, capability descriptions, example
utterances, action descriptions) and one centroid per capability. Adding, changing or removing an
agent touches only that agent's rows (freed rows are reused), never a rebuild of the whole index.
Search is exact (one numpy matrix-vector product) until a table passes ``ann_threshold`` rows; then
an HNSW index (hnswlib: at 100k vectors it built 2.2x and searched 1.9x faster than
usearch, and beat faiss's HNSW too; bench/router_ann.py) mirrors the table and answers top-k queries.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from wot_agents import AgentDescription, EmbedderError

from ._classifier import Snapshot
from ._decision import AgentFilter, agent_key
from ._embedders import Embedder, Vectors

__all__ = ["CapabilityIndex", "IndexView", "IndexedAgent", "IndexedCapability", "agent_texts"]

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class IndexedCapability:
    id: str
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class IndexedAgent:
    """What the index keeps of an agent: enough to filter, explain and prompt, and its slot number."""

    slot: int
    id: str
    title: str
    description: str
    capabilities: tuple[IndexedCapability, ...]
    description_model: AgentDescription
    fingerprint: str
    #: How many example utterances it has (0: described only, by names and descriptions).
    examples: int = 0


@dataclass(frozen=True, slots=True)
class IndexView:
    """The index's agents as they were at one ``version``, immutable: what one route works on.

    Routing threads run while agents are removed and re-added (the runtime teaches its router
    catalog changes while its lanes route), and a freed slot may be reused by another agent
    before a ranking maps its slots back to agents. A route therefore takes one view at its start
    and maps every slot through it; searches given the view skip rows of slots whose agent is no
    longer the view's (``slot_versions`` differ), so each decision is among the agents of one
    moment, and an agent whose removal completed before the route began is never among them.
    A new view is made (O(agents), not O(rows)) on the first request after a change.
    """

    version: int
    #: Per slot, its agent (``None``: free).
    slots: tuple[IndexedAgent | None, ...]
    by_id: Mapping[str, IndexedAgent]
    #: Per slot, the version at which its agent was indexed (-1: free), read-only.
    slot_versions: npt.NDArray[np.int64]

    def agent_at(self, slot: int) -> IndexedAgent:
        agent = self.slots[slot] if 0 <= slot < len(self.slots) else None
        if agent is None:
            raise LookupError(f"slot {slot} holds no agent in this view (version {self.version})")
        return agent

    def get(self, agent_id: str) -> IndexedAgent | None:
        return self.by_id.get(agent_id)


def _readonly(array: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    array.flags.writeable = False
    return array


#: A routable text: (kind, capability number or -1 for the agent itself, text).
Text = tuple[str, int, str]


def agent_texts(agent: AgentDescription) -> tuple[list[IndexedCapability], list[Text]]:
    """The capabilities and every text of an agent that a query may resemble."""
    texts: list[Text] = []
    about = ". ".join(part for part in (agent.title, agent.description) if part)
    texts.append(("agent", -1, about))
    capabilities: list[IndexedCapability] = []
    for number, capability in enumerate(agent.capabilities or ()):
        name = capability.name or capability.id
        description = capability.description or ""
        capabilities.append(IndexedCapability(capability.id, name, description))
        texts.append(("capability", number, f"{name}: {description}" if description else name))
        texts.extend(("example", number, example) for example in capability.examples if example.strip())
    for name, action in (agent.actions or {}).items():
        text = ". ".join(part for part in (action.title or name, action.description) if part)
        texts.append(("action", -1, text))
    return capabilities, texts


class _VectorTable:
    """Rows of unit vectors, each owned by an agent slot (-1 = free), searched exactly or by HNSW."""

    def __init__(self, dim: int, ann_threshold: int) -> None:
        self.dim = dim
        self.ann_threshold = ann_threshold
        self.vectors: Floats = np.zeros((0, dim), dtype=np.float32)
        self.owner: npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)
        self.label: npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)
        self.size = 0  # rows in use or freed, the high-water mark
        self._free: list[int] = []
        self._ann: Any = None

    @property
    def alive(self) -> int:
        return self.size - len(self._free)

    def _grow(self, needed: int) -> None:
        capacity = len(self.owner)
        if needed <= capacity:
            return
        capacity = max(needed, capacity * 2, 64)
        vectors = np.zeros((capacity, self.dim), dtype=np.float32)
        vectors[: self.size] = self.vectors[: self.size]
        owner = np.full(capacity, -1, dtype=np.int32)
        owner[: self.size] = self.owner[: self.size]
        label = np.full(capacity, -1, dtype=np.int32)
        label[: self.size] = self.label[: self.size]
        self.vectors, self.owner, self.label = vectors, owner, label

    def add(self, owner: int, labels: Sequence[int], vectors: Floats) -> list[int]:
        count = len(labels)
        reused = [self._free.pop() for _ in range(min(count, len(self._free)))]
        fresh = list(range(self.size, self.size + count - len(reused)))
        self._grow(self.size + len(fresh))
        self.size += len(fresh)
        rows = reused + fresh
        index = np.asarray(rows, dtype=np.int64)
        self.vectors[index] = vectors
        self.owner[index] = owner
        self.label[index] = np.asarray(labels, dtype=np.int32)
        if self._ann is not None:
            if self._ann.get_max_elements() < len(self.owner):
                self._ann.resize_index(len(self.owner))
            self._ann.add_items(vectors, index)
        elif self.alive >= self.ann_threshold:
            self._build_ann()
        return rows

    def remove(self, rows: Sequence[int]) -> None:
        index = np.asarray(rows, dtype=np.int64)
        self.owner[index] = -1
        self._free.extend(rows)
        if self._ann is not None:
            for row in rows:
                self._ann.mark_deleted(row)  # a later add of the same row replaces it

    def _build_ann(self) -> None:
        try:
            import hnswlib
        except ImportError:  # the exact search still works, only slower on huge indexes
            self.ann_threshold = 1 << 62
            return
        ann = hnswlib.Index(space="ip", dim=self.dim)
        ann.init_index(max_elements=max(len(self.owner), 1024), ef_construction=128, M=16)
        ann.set_ef(64)
        rows = np.flatnonzero(self.owner[: self.size] >= 0).astype(np.int64)
        if len(rows):
            ann.add_items(self.vectors[rows], rows)
        self._ann = ann

    def search(self, query: Floats, k: int, allowed: npt.NDArray[np.bool_] | None) -> tuple[Ints, Floats]:
        """The top-``k`` rows by cosine among rows whose owner is allowed, best first."""
        if self._ann is not None:
            k = min(k, self._allowed_rows(allowed))
            if k <= 0:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            owner = self.owner
            accept = None if allowed is None else (lambda row: bool(allowed[owner[row]]))
            try:
                found, distances = self._ann.knn_query(query, k, filter=accept)
            except RuntimeError:  # a filter so strict that HNSW cannot fill k: search exactly
                return self._exact(query, k, allowed)
            return found[0].astype(np.int64), (1.0 - distances[0]).astype(np.float32)
        return self._exact(query, k, allowed)

    def _allowed_rows(self, allowed: npt.NDArray[np.bool_] | None) -> int:
        owners = self.owner[: self.size]
        return self.alive if allowed is None else int(np.count_nonzero(allowed[owners[owners >= 0]]))

    def _exact(self, query: Floats, k: int, allowed: npt.NDArray[np.bool_] | None) -> tuple[Ints, Floats]:
        sims = self.vectors[: self.size] @ query
        owners = self.owner[: self.size]
        valid = owners >= 0
        if allowed is not None:
            valid &= allowed[np.maximum(owners, 0)]
        sims = np.where(valid, sims, -np.inf).astype(np.float32)
        k = min(k, int(np.count_nonzero(valid)))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        top = top[np.argsort(-sims[top], kind="stable")]
        return top.astype(np.int64), sims[top]


@dataclass(slots=True)
class _Entry:
    agent: IndexedAgent
    rows: list[int]
    centroid_rows: list[int]
    #: Per row of ``rows``: is it an example utterance (else a name, description or action)?
    example_rows: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))


class CapabilityIndex:
    """Embedded texts and capability centroids of a changing set of agents.

    ``upsert`` and ``remove`` are blocking (embedding), like :meth:`search`; the routers call them
    in a worker thread. A lock keeps concurrent updates and searches consistent; a route reads
    the agents through one :meth:`view`, so it may run while others change (see :class:`IndexView`).
    """

    def __init__(
        self, embedder: Embedder, *, ann_threshold: int = 20_000, example_weight: float = 1.0
    ) -> None:
        self.embedder = embedder
        self.ann_threshold = ann_threshold
        self.example_weight = example_weight
        self._entries: dict[str, _Entry] = {}
        self._slots: list[_Entry | None] = []
        self._free_slots: list[int] = []
        #: Per slot, the version at which its current agent was indexed (-1: free); see ``Snapshot``.
        self._slot_versions: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._tables: dict[str, _VectorTable] = {}
        self._lock = threading.RLock()
        #: The descriptions this index removed or replaced (by object id, while someone holds them):
        #: ``upsert(..., revive=False)`` skips them. A route's candidates were taken before it ran,
        #: so they may be stale copies; indexing those would bring back an agent removed since, or
        #: an agent's old description over its new one.
        self._retired: weakref.WeakValueDictionary[int, AgentDescription] = weakref.WeakValueDictionary()
        #: Bumped on every change, so derived models (the classifier) know when to refit.
        self.version = 0
        self._view = IndexView(0, (), MappingProxyType({}), _readonly(np.zeros(0, dtype=np.int64)))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._entries

    @property
    def agents(self) -> list[IndexedAgent]:
        return list(self.view().by_id.values())

    def get(self, agent_id: str) -> IndexedAgent | None:
        entry = self._entries.get(agent_id)
        return entry.agent if entry else None

    def view(self) -> IndexView:
        """The agents as they are now, immutable (made once per change, on first request)."""
        view = self._view
        if view.version == self.version:
            return view
        with self._lock:
            if self._view.version != self.version:
                self._view = IndexView(
                    self.version,
                    tuple(entry.agent if entry is not None else None for entry in self._slots),
                    MappingProxyType({key: entry.agent for key, entry in self._entries.items()}),
                    _readonly(self._slot_versions.copy()),
                )
            return self._view

    def agent_at(self, slot: int) -> IndexedAgent:
        """The agent in ``slot`` now (:class:`LookupError` for a free slot); a route maps the
        slots of its rankings through its own :meth:`view` instead."""
        return self.view().agent_at(slot)

    def table(self, name: str) -> _VectorTable:
        table = self._tables.get(name)
        if table is None:
            if not self.embedder.dim:
                raise EmbedderError(f"embedder {self.embedder.name} does not know its dimension yet")
            table = self._tables[name] = _VectorTable(self.embedder.dim, self.ann_threshold)
        return table

    @staticmethod
    def fingerprint(agent: AgentDescription) -> str:
        _, texts = agent_texts(agent)
        facts = [
            repr(texts),
            repr(agent.supported_tenants),
            repr(agent.supported_channels),
            repr(agent.subset),
        ]
        return hashlib.sha256("\n".join(facts).encode()).hexdigest()[:16]

    def upsert(self, agents: Iterable[AgentDescription], *, revive: bool = True) -> int:
        """Index new agents and re-index changed ones; returns how many were (re)indexed.

        ``revive=False`` skips descriptions this index removed or replaced (:meth:`retired`), also
        when that happens while they are being embedded here: how a route indexes its candidates.
        """
        changed = 0
        for agent in agents:
            if not revive and self.retired(agent):
                continue
            key = agent_key(agent)
            fingerprint = self.fingerprint(agent)
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry.agent.fingerprint == fingerprint:
                    continue
            changed += self._add(agent, key, fingerprint, revive=revive)
        return changed

    def retired(self, agent: AgentDescription) -> bool:
        """Whether this description was removed from the index, or replaced by another, since it
        was indexed (the very object: a new description of the same agent is not retired)."""
        return self._retired.get(id(agent)) is agent

    def remove(self, agent_id: str) -> bool:
        with self._lock:
            entry = self._entries.pop(agent_id, None)
            if entry is None:
                return False
            self.table("texts").remove(entry.rows)
            self.table("centroids").remove(entry.centroid_rows)
            self._slots[entry.agent.slot] = None
            self._free_slots.append(entry.agent.slot)
            self._retired[id(entry.agent.description_model)] = entry.agent.description_model
            self.version += 1
            self._slot_versions[entry.agent.slot] = -1
            return True

    def sync(self, agents: Sequence[AgentDescription]) -> None:
        """Make the index hold exactly these agents."""
        keep = {agent_key(agent) for agent in agents}
        for agent_id in [agent_id for agent_id in self.view().by_id if agent_id not in keep]:
            self.remove(agent_id)
        self.upsert(agents)

    def _add(self, agent: AgentDescription, key: str, fingerprint: str, *, revive: bool = True) -> int:
        capabilities, texts = agent_texts(agent)
        vectors = self.embedder.embed([text for _, _, text in texts])  # outside the lock: the slow part
        labels = [number for _, number, _ in texts]
        centroid_labels, centroids = self._centroids(texts, vectors, len(capabilities))
        with self._lock:
            if not revive and self.retired(agent):
                return 0  # removed or replaced while it was embedded
            self.remove(key)
            self._retired.pop(id(agent), None)  # indexed again (an explicit add of a removed agent)
            slot = self._free_slots.pop() if self._free_slots else len(self._slots)
            if slot == len(self._slots):
                self._slots.append(None)
                self._slot_versions = np.append(self._slot_versions, -1)
            indexed = IndexedAgent(
                slot=slot,
                id=key,
                title=agent.title,
                description=agent.description or "",
                capabilities=tuple(capabilities),
                description_model=agent,
                fingerprint=fingerprint,
                examples=sum(kind == "example" for kind, _, _ in texts),
            )
            entry = _Entry(
                indexed,
                self.table("texts").add(slot, labels, vectors),
                self.table("centroids").add(slot, centroid_labels, centroids),
                np.asarray([kind == "example" for kind, _, _ in texts], dtype=bool),
            )
            self._entries[key] = entry
            self._slots[slot] = entry
            self.version += 1
            self._slot_versions[slot] = self.version
        return 1

    def _centroids(
        self, texts: Sequence[Text], vectors: Vectors, capabilities: int
    ) -> tuple[list[int], Vectors]:
        """One unit vector per capability: the mean of its examples and its description.

        An agent without capabilities gets one centroid of its description and actions (label -1).
        """
        kinds = np.asarray([kind for kind, _, _ in texts])
        numbers = np.asarray([number for _, number, _ in texts])
        weights = np.where(kinds == "example", self.example_weight, 1.0).astype(np.float32)
        groups = [(number, numbers == number) for number in range(capabilities)] or [(-1, numbers == -1)]
        labels: list[int] = []
        rows: list[Vectors] = []
        for number, mask in groups:
            if not mask.any():
                continue
            mean = (vectors[mask] * weights[mask, None]).sum(axis=0)
            rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
            labels.append(number)
        return labels, np.asarray(rows, dtype=np.float32).reshape(len(rows), vectors.shape[1])

    @property
    def slot_versions(self) -> npt.NDArray[np.int64]:
        """Per slot, the version at which its agent was indexed, -1 for a free slot (read-only view)."""
        view = self._slot_versions.view()
        view.flags.writeable = False
        return view

    def snapshot(self) -> Snapshot:
        """A copy of the live text rows and slot versions, consistent with ``version``."""
        with self._lock:
            table = self.table("texts")
            alive = np.flatnonzero(table.owner[: table.size] >= 0)
            return Snapshot(
                self.version,
                table.vectors[alive],
                table.owner[alive],
                table.label[alive],
                self._slot_versions.copy(),
            )

    def allowed_mask(
        self,
        candidates: Iterable[str] | None = None,
        where: AgentFilter | None = None,
        view: IndexView | None = None,
    ) -> npt.NDArray[np.bool_] | None:
        """A mask over the slots of ``view`` (default: now) for the candidates passing the filter;
        ``None`` when all pass."""
        if candidates is None and (where is None or where == AgentFilter()):
            return None
        view = view or self.view()
        mask = np.zeros(max(len(view.slots), 1), dtype=bool)
        agents = (
            view.by_id.values()
            if candidates is None
            else (agent for agent_id in candidates if (agent := view.by_id.get(agent_id)) is not None)
        )
        for agent in agents:
            if where is None or where.accepts(agent.description_model):
                mask[agent.slot] = True
        return mask

    def similarity(self, slot: int, query: Floats, view: IndexView | None = None) -> float | None:
        """The query's highest cosine to any text of the agent in ``slot`` (-1 for a free slot);
        with a ``view``, ``None`` when that slot no longer holds the view's agent (it left).

        Unlike a classifier's probability, it does not depend on how many other agents there are,
        so an abstention gate on it transfers from a calibration set to any deployment.
        """
        with self._lock:
            entry = self._slots[slot] if slot < len(self._slots) else None
            if view is not None and (entry is None or self._slot_versions[slot] != view.slot_versions[slot]):
                return None
            if entry is None:
                return -1.0
            return float((self.table("texts").vectors[entry.rows] @ query).max())

    def held_out_similarities(
        self, skip: int | None = None
    ) -> tuple[dict[int, npt.NDArray[np.float64]], npt.NDArray[np.float64]]:
        """What an in-scope query's similarity to its agent looks like, from the agents themselves.

        Leave-one-out over every example utterance: its highest cosine to the other texts of its
        own agent (as a new query is compared with all of them), and its highest cosine to its
        agent's names and descriptions alone (as a query is compared with an agent that has no
        examples). The first per agent slot, the second for all agents together. ``skip``: a slot
        left out (the out-of-scope pseudo-agent).
        """
        _, _, held_out, described = self.held_out_at(skip)
        return held_out, described

    def held_out_at(
        self, skip: int | None = None
    ) -> tuple[int, npt.NDArray[np.int64], dict[int, npt.NDArray[np.float64]], npt.NDArray[np.float64]]:
        """:meth:`held_out_similarities`, with the version and slot versions they were taken at."""
        with self._lock:
            version, slot_versions = self.version, _readonly(self._slot_versions.copy())
            vectors = self.table("texts").vectors if self._tables else np.zeros((0, 0), dtype=np.float32)
            held_out: dict[int, npt.NDArray[np.float64]] = {}
            described: list[npt.NDArray[np.float32]] = []
            for entry in self._entries.values():
                if entry.agent.slot == skip or not entry.example_rows.any():
                    continue
                own = vectors[entry.rows]
                sims = own[entry.example_rows] @ own.T
                sims[np.arange(len(sims)), np.flatnonzero(entry.example_rows)] = -np.inf  # not itself
                held_out[entry.agent.slot] = sims.max(axis=1).astype(np.float64)
                if (~entry.example_rows).any():
                    described.append(sims[:, ~entry.example_rows].max(axis=1))
        every = np.concatenate(described).astype(np.float64) if described else np.zeros(0)
        return version, slot_versions, held_out, every

    def search(
        self,
        table: str,
        query: Floats,
        k: int,
        allowed: npt.NDArray[np.bool_] | None = None,
        view: IndexView | None = None,
    ) -> tuple[Ints, Floats, npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """Top-k rows of a table: ``(rows, similarities, owner slots, capability numbers)``.

        With a ``view``, only rows of the view's agents that are still indexed as they were
        (``allowed`` is over the view's slots): every owner slot maps to an agent through it.
        """
        with self._lock:
            vectors = self.table(table)
            if view is not None:
                allowed = self._in_view(view, allowed)
            rows, sims = vectors.search(query, k, allowed)
            return rows, sims, vectors.owner[rows], vectors.label[rows]

    def _in_view(self, view: IndexView, allowed: npt.NDArray[np.bool_] | None) -> npt.NDArray[np.bool_]:
        """``allowed`` (over the view's slots) narrowed to slots holding the view's agent still,
        sized to today's slots (held under the lock)."""
        seen = len(view.slot_versions)
        then = view.slot_versions
        mask = np.zeros(max(len(self._slot_versions), 1), dtype=bool)
        mask[:seen] = (self._slot_versions[:seen] == then) & (then >= 0)
        if allowed is not None:
            shared = min(seen, len(allowed))
            mask[:shared] &= allowed[:shared]
            mask[shared:seen] = False
        return mask
