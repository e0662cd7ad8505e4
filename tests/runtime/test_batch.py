"""Micro-batched embedding: concurrent calls share batches, results stay with their callers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from router import Decision
from runtime._batch import BatchingEmbedder, RouteBatcher
from tests.servers import eventually
from wot_agents import RoutingError


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


def _until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait (on this thread) until ``condition`` holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        threading.Event().wait(0.001)


def test_concurrent_calls_are_joined_into_one_batch() -> None:
    inner = Recording()
    batching = BatchingEmbedder(inner, lanes=1)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batching.embed, ["0"])
        assert inner.entered.wait(10)  # the first call runs alone, at once
        rest = [pool.submit(batching.embed, [str(n)]) for n in range(1, 8)]
        _until(lambda: len(batching._queue) == 7)  # all seven wait behind the running call
        inner.release.set()
        assert first.result()[0][0] == 0.0
        assert [future.result()[0][0] for future in rest] == [float(n) for n in range(1, 8)]
    assert inner.calls[0] == ["0"] and sorted(inner.calls[1], key=int) == [str(n) for n in range(1, 8)]
    assert (batching.batches, batching.texts, batching.name, batching.dim) == (2, 8, "recording", 1)


def test_a_second_embedding_batch_starts_only_once_half_a_batch_waits() -> None:
    # As for routing: texts arriving while a batch runs join the next one, unless half a batch
    # already waits; two lanes each taking a text or two would pay the model's fixed cost each.
    inner = Recording()
    batching = BatchingEmbedder(inner, lanes=2, max_batch=8)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batching.embed, ["0"])
        assert inner.entered.wait(10)
        waiting = [pool.submit(batching.embed, [str(n)]) for n in range(1, 4)]
        _until(lambda: len(batching._queue) == 3)
        assert len(inner.calls) == 1  # three texts wait: no second batch
        waiting.append(pool.submit(batching.embed, ["4"]))  # four: half a batch, on the free lane
        _until(lambda: len(inner.calls) == 2)
        assert sorted(inner.calls[1], key=int) == ["1", "2", "3", "4"]
        inner.release.set()
        assert first.result()[0][0] == 0.0
        assert [future.result()[0][0] for future in waiting] == [1.0, 2.0, 3.0, 4.0]
    assert (batching.batches, batching.texts, len(batching._queue), batching._queued) == (2, 5, 0, 0)


def test_a_routing_batch_embeds_beside_a_running_one() -> None:
    # The vector router's two routing lanes each hand over a whole batch: they run side by side.
    inner = Recording()
    batching = BatchingEmbedder(inner, lanes=2, max_batch=64)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(batching.embed, [str(n) for n in range(20)])
        assert inner.entered.wait(10)
        second = pool.submit(batching.embed, [str(n) for n in range(20, 52)])
        _until(lambda: len(inner.calls) == 2)
        inner.release.set()
        assert [row[0] for row in second.result()] == [float(n) for n in range(20, 52)]
        assert first.result().shape == (20, 1)


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


class Routes:
    """A router whose decision names the query; the first batch blocks until released."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def route_many(self, turns: Sequence[Any]) -> list[Decision | RoutingError]:
        self.batches.append([query for query, _, _ in turns])
        self.entered.set()
        self.release.wait(10)
        if any(query == "crash" for query, _, _ in turns):
            raise RuntimeError("the model crashed")
        return [
            RoutingError("cannot route an empty query") if not query else Decision(query, 1.0, "", "vector")
            for query, _, _ in turns
        ]


async def test_concurrent_turns_are_routed_in_one_batch_each_getting_its_decision() -> None:
    routes = Routes()
    batcher = RouteBatcher(routes, lanes=1)
    try:
        first = asyncio.create_task(batcher.route("q0"))
        assert await asyncio.to_thread(routes.entered.wait, 10)  # the first turn is routed at once
        rest = [asyncio.create_task(batcher.route(f"q{n}")) for n in range(1, 8)]
        empty = asyncio.create_task(batcher.route(""))
        await eventually(lambda: len(batcher._waiting) == 8, within=10)  # behind the running batch
        routes.release.set()
        assert (await first).agent_id == "q0"
        assert [(await task).agent_id for task in rest] == [f"q{n}" for n in range(1, 8)]
        with pytest.raises(RoutingError, match="empty query"):  # its error goes to that turn only
            await empty
        assert routes.batches == [["q0"], [f"q{n}" for n in range(1, 8)] + [""]]
        assert (batcher.batches, batcher.turns) == (2, 9)
    finally:
        await batcher.aclose()


async def test_a_second_lane_starts_only_once_a_full_batch_waits() -> None:
    # Small batches cost the model's fixed cost a run each: turns arriving while a lane routes
    # join its next batch, unless a whole batch already waits.
    routes = Routes()
    batcher = RouteBatcher(routes, lanes=2, max_batch=4)
    try:
        first = asyncio.create_task(batcher.route("q0"))
        assert await asyncio.to_thread(routes.entered.wait, 10)
        waiting = [asyncio.create_task(batcher.route(f"q{n}")) for n in range(1, 4)]
        await eventually(lambda: len(batcher._waiting) == 3, within=10)
        assert len(batcher._lanes) == 1  # three waiting turns: no second lane
        waiting.append(asyncio.create_task(batcher.route("q4")))
        await eventually(lambda: len(routes.batches) == 2, within=10)  # four: a full batch
        assert len(batcher._lanes) == 2
        assert routes.batches[1] == ["q1", "q2", "q3", "q4"]
        routes.release.set()
        assert (await first).agent_id == "q0"
        assert [(await task).agent_id for task in waiting] == ["q1", "q2", "q3", "q4"]
    finally:
        routes.release.set()
        await batcher.aclose()


async def test_a_failed_batch_fails_its_turns_and_the_lanes_stop_on_close() -> None:
    routes = Routes()
    routes.release.set()
    batcher = RouteBatcher(routes, lanes=2)
    with pytest.raises(RuntimeError, match="crashed"):
        await batcher.route("crash")
    assert (await batcher.route("next")).agent_id == "next"  # the lane survived
    lanes = list(batcher._lanes)
    await batcher.aclose()
    assert lanes and not any(lane.is_alive() for lane in lanes)
    with pytest.raises(RoutingError, match="shutting down"):
        await batcher.route("late")
