"""Micro-batched routing: concurrent turns share one embedding call instead of one each.

:class:`RouteBatcher` batches whole routing calls of a :class:`~router.VectorRouter`: turns
waiting while its ``lanes`` are busy are routed together by the next free one
(:meth:`~router.VectorRouter.route_many`: one embedding call and one hand-off back to the event
loop per batch, not a worker thread per turn). :class:`BatchingEmbedder` does the same one level
down, for routers that embed on worker threads of their own (the cascade's and the hybrid's).

A vector router embeds each query on a worker thread. Under load many turns embed at once, and
one batch of N short texts costs far less than N single calls (one model invocation, matrix
products instead of vector ones). :class:`BatchingEmbedder` wraps the router's embedder: a call
that finds a batch running waits (unless half a batch now waits and a lane is free), and when a
batch ends, the oldest waiting call leads the next one, taking every text queued meanwhile (up
to ``max_batch``). At low load a call runs at once (no waiting window), so batching adds no
latency; it appears exactly when turns overlap, and batches grow with the load.

Each waiting call sleeps on an event of its own, woken once: when its batch is done, or to lead
the next batch. (Waking every waiting thread at the end of each batch, as one shared condition
does, cost ~10% of the runtime's CPU at 64 concurrent turns: bench/runtime.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from router import Decision, Embedder
from wot_agents import AgentDescription, ChatMessage, RoutingError

__all__ = ["BatchingEmbedder", "RouteBatcher", "RoutesMany"]

_Turn = tuple[str, Sequence[ChatMessage], Sequence[AgentDescription] | None]


class RoutesMany(Protocol):
    """What :class:`RouteBatcher` needs of a router: :meth:`router.VectorRouter.route_many`."""

    def route_many(self, turns: Sequence[_Turn]) -> Sequence[Decision | RoutingError]: ...


class RouteBatcher:
    """Routes concurrent turns through ``router`` in batches of up to ``max_batch`` turns, on
    ``lanes`` worker threads of its own (:meth:`~router.VectorRouter.route_many`).

    A turn finding no lane routing is routed at once (alone, or with the turns already waiting):
    no waiting window at low load. A lane that finishes a batch takes every turn queued meanwhile
    itself, without waiting for the event loop to hand it the next one, so the batches grow with
    the load while the loop only hears of each batch's decisions. Another lane joins only while a
    full batch waits (:meth:`_may_start`): small batches waste CPU on the model's fixed cost a
    run. ``aclose`` routes what is queued and stops the lanes.
    """

    def __init__(self, router: RoutesMany, *, max_batch: int = 32, lanes: int = 2) -> None:
        self.router = router
        self.max_batch = max_batch
        self.lanes = lanes
        self._ready = threading.Condition()
        self._waiting: deque[tuple[_Turn, asyncio.Future[Decision]]] = deque()
        self._lanes: list[threading.Thread] = []
        self._idle = 0
        #: Lanes routing a batch now.
        self._running = 0
        self._closed = False
        #: Batches run and turns routed through them (benchmarks report the mean batch).
        self.batches = 0
        self.turns = 0

    async def route(
        self,
        query: str,
        history: Sequence[ChatMessage] = (),
        candidates: Sequence[AgentDescription] | None = None,
    ) -> Decision:
        """The router's decision for this turn (its :class:`~wot_agents.RoutingError` if it has none)."""
        future: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        with self._ready:
            if self._closed:
                raise RoutingError("the runtime is shutting down")
            self._waiting.append(((query, history, candidates), future))
            if self._may_start():
                if self._idle:
                    self._ready.notify()
                elif len(self._lanes) < self.lanes:
                    lane = threading.Thread(target=self._lane, name="wot-runtime-routing", daemon=True)
                    self._lanes.append(lane)
                    lane.start()
        return await future

    def _may_start(self) -> bool:
        """Whether a free lane should route what waits now (called holding ``_ready``).

        When no lane is routing, yes: no waiting window. While one is, only once a full batch
        waits: the turns otherwise join the running lane's next batch. A batch's cost is ~2 ms
        of fixed cost (the model's weights streamed through the cache once a run) plus ~1.1 ms a
        query, so two lanes each taking what trickled in ran batches of ~6.5 turns under 64
        clients, one lane ~16.5 turns at 0.5 ms less CPU a turn (bench/runtime.py).
        """
        return bool(self._waiting) and (self._running == 0 or len(self._waiting) >= self.max_batch)

    def _lane(self) -> None:
        while True:
            with self._ready:
                self._idle += 1
                while not self._closed and not self._may_start():
                    self._ready.wait()
                self._idle -= 1
                if not self._waiting:
                    return  # closed, and nothing left to route
                batch = [self._waiting.popleft() for _ in range(min(self.max_batch, len(self._waiting)))]
                self._running += 1
                if self._idle and self._may_start():  # a full batch still waits: another lane takes it
                    self._ready.notify()
            decisions: Sequence[Decision | BaseException]
            try:
                decisions = self.router.route_many([turn for turn, _ in batch])
            except BaseException as exc:  # every turn of the batch hears of it
                decisions = [exc] * len(batch)
            with self._ready:
                self._running -= 1
                self.batches += 1
                self.turns += len(batch)
            loop = batch[0][1].get_loop()
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is waiting
                loop.call_soon_threadsafe(_deliver, batch, decisions)

    async def aclose(self) -> None:
        """Route the turns still queued, then stop the lanes; idempotent."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
            lanes, self._lanes = self._lanes, []
        for lane in lanes:
            await asyncio.to_thread(lane.join)


def _deliver(
    batch: list[tuple[_Turn, asyncio.Future[Decision]]], decisions: Sequence[Decision | BaseException]
) -> None:
    for (_, future), decision in zip(batch, decisions, strict=True):
        if future.done():  # the turn was given up (its client left)
            continue
        if isinstance(decision, Exception):
            future.set_exception(decision)
        elif isinstance(decision, BaseException):
            future.set_exception(RuntimeError(f"routing was interrupted: {decision!r}"))
        else:
            future.set_result(decision)


class _Call:
    __slots__ = ("done", "error", "lead", "result", "texts", "woken")

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)
        self.woken = threading.Event()  # set once: done, or chosen to lead the next batch
        self.lead = False
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class BatchingEmbedder:
    """An :class:`~router.Embedder` joining concurrent small calls into batches of up to ``max_batch``
    texts, at most ``lanes`` batches at a time (one per core is a good number).

    As in :class:`RouteBatcher`, a call finding no batch running leads one at once, and another
    batch starts beside a running one only once half a batch of texts (``max_batch // 2``)
    waits: otherwise two lanes each take what trickled in while the other ran, paying the
    model's fixed cost a run for a few texts each. Half, not all: the vector router's routing
    lanes hand it whole batches (:class:`RouteBatcher`'s second lane starts with 32 turns),
    which must run side by side.
    """

    def __init__(self, embedder: Embedder, *, max_batch: int = 64, lanes: int = 2) -> None:
        self.embedder = embedder
        self.max_batch = max_batch
        self.lanes = lanes
        self._lock = threading.Lock()
        self._queue: deque[_Call] = deque()
        #: Texts of the calls in ``_queue``.
        self._queued = 0
        self._running = 0
        #: Batches run and texts embedded through them (benchmarks report the mean batch).
        self.batches = 0
        self.texts = 0

    @property
    def name(self) -> str:
        return self.embedder.name  # calibrated thresholds are looked up by the inner model's name

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def embed(self, texts: Sequence[str]) -> Any:
        if len(texts) >= self.max_batch:  # indexing agents: already a batch
            return self.embedder.embed(texts)
        call = _Call(texts)
        with self._lock:
            if self._running == 0 or (
                self._running < self.lanes and self._queued + len(call.texts) >= max(1, self.max_batch // 2)
            ):
                self._running += 1
                call.lead = True
            else:
                self._queue.append(call)
                self._queued += len(call.texts)
        if not call.lead:
            call.woken.wait()
            if call.done:
                return self._outcome(call)
        # This call leads a batch: itself and whatever waits before it, up to max_batch texts.
        with self._lock:
            batch = [call]
            size = len(call.texts)
            while self._queue and size + len(self._queue[0].texts) <= self.max_batch:
                item = self._queue.popleft()
                self._queued -= len(item.texts)
                size += len(item.texts)
                batch.append(item)
        self._run(batch, size)
        return self._outcome(call)

    def _run(self, batch: list[_Call], size: int) -> None:
        try:
            vectors = self.embedder.embed([text for item in batch for text in item.texts])
            start = 0
            for item in batch:
                item.result = np.asarray(vectors[start : start + len(item.texts)])
                start += len(item.texts)
        except BaseException as exc:
            for item in batch:
                item.error = exc
        with self._lock:
            self.batches += 1
            self.texts += size
            if self._queue:  # the lane passes to the oldest waiting call
                successor = self._queue.popleft()
                self._queued -= len(successor.texts)
                successor.lead = True
                successor.woken.set()
            else:
                self._running -= 1
        for item in batch:
            item.done = True
            if item is not batch[0]:
                item.woken.set()

    @staticmethod
    def _outcome(call: _Call) -> Any:
        if call.error is not None:
            raise call.error
        return call.result
