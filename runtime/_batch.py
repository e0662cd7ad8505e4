"""Micro-batched embedding: concurrent turns share one embedding call instead of one each.

A vector router embeds each query on a worker thread. Under load many turns embed at once, and
one batch of N short texts costs far less than N single calls (one model invocation, matrix
products instead of vector ones). :class:`BatchingEmbedder` wraps the router's embedder: a call
that finds ``lanes`` batches already running waits, and the next free lane takes every text
queued meanwhile in one call. At low load a call runs at once (no waiting window), so batching
adds no latency; it appears exactly when turns overlap.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from router import Embedder

__all__ = ["BatchingEmbedder"]


class _Call:
    __slots__ = ("done", "error", "result", "taken", "texts")

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)
        self.taken = False  # in a batch another lane is running
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
        self._cond = threading.Condition()
        self._queue: list[_Call] = []
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
        with self._cond:
            self._queue.append(call)
        while True:
            with self._cond:
                while not call.done and (call.taken or self._running >= self.lanes):
                    self._cond.wait()
                if call.done:
                    return self._outcome(call)
                self._running += 1
                batch: list[_Call] = []
                size = 0
                while self._queue and (not batch or size + len(self._queue[0].texts) <= self.max_batch):
                    item = self._queue.pop(0)
                    item.taken = True
                    size += len(item.texts)
                    batch.append(item)
            self._run(batch, size)

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
        finally:
            with self._cond:
                self._running -= 1
                self.batches += 1
                self.texts += size
                for item in batch:
                    item.done = True
                self._cond.notify_all()

    @staticmethod
    def _outcome(call: _Call) -> Any:
        if call.error is not None:
            raise call.error
        return call.result
