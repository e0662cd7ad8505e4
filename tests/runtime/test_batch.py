"""Micro-batched embedding: concurrent calls share batches, results stay with their callers."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from runtime._batch import BatchingEmbedder


class Recording:
    """An embedder whose vectors encode the text (its number), and that blocks until released."""

    name = "recording"
    dim = 1

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def embed(self, texts: Sequence[str]) -> Any:
        self.calls.append(list(texts))
        self.entered.set()
        self.release.wait(10)
        if "boom" in texts:
            raise RuntimeError("boom")
        return np.array([[float(text)] for text in texts], dtype=np.float32)


def test_concurrent_calls_are_joined_into_one_batch() -> None:
    inner = Recording()
    batching = BatchingEmbedder(inner, lanes=1)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batching.embed, ["0"])
        assert inner.entered.wait(10)  # the first call runs alone, at once
        rest = [pool.submit(batching.embed, [str(n)]) for n in range(1, 8)]
        while len(batching._queue) < 7:  # all seven wait behind the running call
            threading.Event().wait(0.001)
        inner.release.set()
        assert first.result()[0][0] == 0.0
        assert [future.result()[0][0] for future in rest] == [float(n) for n in range(1, 8)]
    assert inner.calls[0] == ["0"] and sorted(inner.calls[1], key=int) == [str(n) for n in range(1, 8)]
    assert (batching.batches, batching.texts, batching.name, batching.dim) == (2, 8, "recording", 1)


def test_a_failed_batch_fails_each_of_its_callers() -> None:
    inner = Recording()
    inner.release.set()
    batching = BatchingEmbedder(inner)
    with pytest.raises(RuntimeError, match="boom"):
        batching.embed(["boom"])
    assert batching.embed(["3"])[0][0] == 3.0


def test_no_lane_runs_an_empty_batch_while_another_holds_the_call() -> None:
    class Slow:
        name, dim = "slow", 1

        def __init__(self) -> None:
            self.calls: list[list[str]] = []

        def embed(self, texts: Sequence[str]) -> Any:
            self.calls.append(list(texts))
            threading.Event().wait(0.005)
            return np.array([[float(text)] for text in texts], dtype=np.float32)

    inner = Slow()
    batching = BatchingEmbedder(inner, lanes=2)
    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda n: batching.embed([str(n)])[0][0], range(200)))
    assert results == [float(n) for n in range(200)]
    assert all(inner.calls) and sum(len(call) for call in inner.calls) == 200
    assert len(inner.calls) < 200  # some calls shared a batch
