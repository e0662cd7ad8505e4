"""Micro-batched embedding: concurrent turns share one embedding call instead of one each.

A vector router embeds each query on a worker thread. Under load many turns embed at once, and
one batch of N short texts costs far less than N single calls (one model invocation, matrix
products instead of vector ones). :class:`BatchingEmbedder` wraps the router's embedder: a call
that finds ``lanes`` batches already running waits, and when a batch ends, the oldest waiting
call leads the next one, taking every text queued meanwhile (up to ``max_batch``). At low load a
call runs at once (no waiting window), so batching adds no latency; it appears exactly when
turns overlap, and batches grow with the load.

Each waiting call sleeps on an event of its own, woken once: when its batch is done, or to lead
the next batch. (Waking every waiting thread at the end of each batch, as one shared condition
does, cost ~10% of the runtime's CPU at 64 concurrent turns: bench/runtime.py.)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from router import Embedder

__all__ = ["BatchingEmbedder"]


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
    texts, at most ``lanes`` batches at a time (one per core is a good number)."""

    def __init__(self, embedder: Embedder, *, max_batch: int = 64, lanes: int = 2) -> None:
        self.embedder = embedder
        self.max_batch = max_batch
        self.lanes = lanes
        self._lock = threading.Lock()
        self._queue: deque[_Call] = deque()
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
            if self._running < self.lanes:
                self._running += 1
                call.lead = True
            else:
                self._queue.append(call)
        if not call.lead:
            call.woken.wait()
            if call.done:
                return self._outcome(call)
        # This call leads a batch: itself and whatever waits behind it, up to max_batch texts.
        with self._lock:
            batch = [call]
            size = len(call.texts)
            while self._queue and size + len(self._queue[0].texts) <= self.max_batch:
                item = self._queue.popleft()
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
