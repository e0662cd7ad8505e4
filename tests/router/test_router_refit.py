"""The classifier rule's background refit: the old model serves, new agents route, removed ones never do."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from router import VectorRouter
from wot_agents.cli import main

from .conftest import write_agents, write_queries
from .test_router_out_of_scope import NEGATIVES

NEW_AGENT = (
    "urn:test:recipes",
    "Recipe agent",
    "Suggests recipes and cooking times.",
    [
        (
            "recipe",
            "recipes and cooking",
            ["how do I make lasagna", "a recipe for pancakes", "how long to boil eggs"],
        )
    ],
)


async def test_the_old_model_serves_until_the_refit_lands(minilm, agents, make_agent) -> None:
    router = VectorRouter(minilm, threshold=0.0, refit_delay=3600)  # the refit waits: we watch the gap
    async with router:
        await router.add(agents)
        first = await router.route("play some jazz")
        assert first.agent_id == "urn:test:music" and "by classifier" in first.reason
        old_model = router._model

        await router.add([make_agent(*NEW_AGENT)])
        await router.remove("urn:test:music")
        assert router.refit_pending and router._model is old_model

        known = await router.route("I want my money back")  # an agent the old model knows
        assert known.agent_id == "urn:test:billing" and "by classifier" in known.reason
        new = await router.route("give me a recipe for apple pie")  # an agent it never saw
        assert new.agent_id == "urn:test:recipes" and "by centroid" in new.reason
        for query in ("play some jazz", "next song please", "put on my playlist"):
            decision = await router.route(query)
            assert "urn:test:music" not in dict(decision.ranking), decision

        await router.refitted()
        assert not router.refit_pending and router._model is not old_model
        after = await router.route("give me a recipe for apple pie")
        assert after.agent_id == "urn:test:recipes" and "by classifier" in after.reason
        assert "urn:test:music" not in dict((await router.route("play some jazz")).ranking)


async def test_a_burst_of_changes_costs_one_refit_in_the_background(minilm, agents) -> None:
    router = VectorRouter(minilm, threshold=0.0, refit_delay=1.0)
    fits = 0
    refit = router._refit

    def counting() -> None:
        nonlocal fits
        fits += 1
        refit()

    router._refit = counting  # type: ignore[method-assign]
    async with router:
        for agent in agents:  # four changes in a row, each under the quiet delay
            await router.add([agent])
        assert fits == 0 and router.refit_pending
        for _ in range(200):
            if not router.refit_pending:
                break
            await asyncio.sleep(0.05)
        assert not router.refit_pending and fits == 1
        assert (await router.route("refund my order")).agent_id == "urn:test:billing"
        assert fits == 1


class HashEmbedder:
    """Random unit vectors seeded by the text: enough rows and classes for a fit that takes a while."""

    name = "hash-test"
    dim = 384

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        rows = [
            np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8])).normal(
                size=self.dim
            )
            for text in texts
        ]
        vectors = np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


async def test_close_stops_a_refit_in_flight_and_leaves_no_task(make_agent) -> None:
    many = [
        make_agent(
            f"urn:test:{n}",
            f"Agent {n}",
            f"agent {n}",
            [(f"c{n}", f"c {n}", [f"ex {n} {k}" for k in range(8)])],
        )
        for n in range(400)
    ]
    router = VectorRouter(HashEmbedder(), threshold=0.0, refit_delay=0.0)
    await router.add(many)
    task = router._refit_task
    assert task is not None
    for _ in range(200):  # until the fit runs in its worker thread
        if router._fit_lock.locked():
            break
        await asyncio.sleep(0.01)
    assert router._fit_lock.locked()
    await router.aclose()
    assert task.done() and router._refit_task is None
    assert not router._fit_lock.locked()  # the worker thread noticed the abort and let go
    assert router.refit_pending  # the fit was abandoned, not finished
    await router.aclose()  # idempotent
    await router.add([make_agent(*NEW_AGENT)])
    assert router._refit_task is None  # a closed router schedules nothing


async def test_a_fitting_process_that_died_is_started_again(minilm, agents, make_agent) -> None:
    async with VectorRouter(minilm, threshold=0.0) as router:
        await router.add(agents)
        await router.refitted()
        process = router._worker._process
        assert process is not None
        process.kill()  # as the kernel's out-of-memory killer would
        await asyncio.to_thread(process.wait)
        await router.add([make_agent(*NEW_AGENT)])
        await router.refitted()
        assert router._worker._process not in (None, process)
        decision = await router.route("give me a recipe for apple pie")
        assert decision.agent_id == "urn:test:recipes" and "by classifier" in decision.reason


def test_route_and_eval_decide_with_everything_they_taught(agents, tmp_path, capsys, monkeypatch) -> None:
    """The CLI waits for the classifier to learn all it taught (the agents, then the out-of-scope
    examples) before routing. The race is made certain: the model learns the agents before the
    examples are taught, and no background refit ever lands, as on a machine too loaded to run one
    in time; a command that did not await ``refitted()`` would route on the model without the
    examples."""

    teach_examples = VectorRouter.set_out_of_scope

    async def after_the_first_refit(router: VectorRouter, examples: Sequence[str]) -> None:
        await router.refitted()  # the agents' refit lands at once
        await teach_examples(router, examples)

    async def never(router: VectorRouter) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(VectorRouter, "set_out_of_scope", after_the_first_refit)
    monkeypatch.setattr(VectorRouter, "_refit_when_quiet", never)  # no background refit lands
    agents_file = write_agents(tmp_path / "agents.json", agents)
    negatives = write_queries(tmp_path / "negatives.csv", [(text, "") for text in NEGATIVES])
    taught = ["--agents", str(agents_file), "--threshold", "0", "--out-of-scope", str(negatives)]
    assert main(["route", *taught, "who wrote Hamlet"]) == 3  # the examples' class refused it
    capsys.readouterr()
    queries = write_queries(
        tmp_path / "queries.csv", [("who wrote Hamlet", ""), ("refund my order", "urn:test:billing")]
    )
    assert main(["router", "eval", *taught, "--queries", str(queries), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["outOfScopeRecall"] == 1.0 and report["inScopeAccuracy"] == 1.0, report
