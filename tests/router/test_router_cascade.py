"""The cascade: MiniLM decides what it is sure of, a second vector router settles the rest."""

from __future__ import annotations

import json

import pytest

from router import OUT_OF_SCOPE, CascadeRouter, E5Embedder, VectorRouter, create_router
from wot_agents.cli import main

from .conftest import write_agents, write_queries
from .test_router_joined import FOREIGN

ENGLISH = [
    ("What's the weather in Paris tomorrow?", "urn:test:weather"),
    ("play some jazz", "urn:test:music"),
    ("I need a refund for my last invoice", "urn:test:billing"),
]


@pytest.fixture
async def cascade(minilm, agents):
    """MiniLM, then e5 (multilingual) for what MiniLM is unsure of; no abstention gates."""
    router = CascadeRouter(
        VectorRouter(minilm, threshold=0.0), VectorRouter(E5Embedder(threads=1), threshold=0.0)
    )
    async with router:
        await router.add(agents)
        yield router


async def test_sure_decisions_stay_fast_and_unsure_ones_go_to_the_accurate_router(cascade) -> None:
    for query, expected in ENGLISH:
        decision = await cascade.route(query)
        assert (decision.agent_id, decision.method) == (expected, "cascade:fast")
    right, fast_right, escalated = 0, 0, 0
    for query, expected in FOREIGN:
        decision = await cascade.route(query)
        right += decision.agent_id == expected
        fast_right += (await cascade.fast.route(query)).agent_id == expected
        if decision.method == "cascade:accurate":
            escalated += 1
            assert decision.agent_id == (await cascade.accurate.route(query)).agent_id
        else:
            assert decision.method == "cascade:fast"
    # MiniLM knows English only: it is unsure of most foreign queries, and e5 routes them
    assert escalated >= len(FOREIGN) // 2
    assert right > fast_right


async def test_agents_and_out_of_scope_examples_reach_both_routers(cascade, agents) -> None:
    assert await cascade.remove("urn:test:music")
    decision = await cascade.route("play some jazz")
    assert decision.agent_id != "urn:test:music"
    for router in cascade.routers:
        assert "urn:test:music" not in {agent_id for agent_id, _ in (await router.route("play")).ranking}
    await cascade.set_out_of_scope(["what is the capital of France", "tell me a joke"])
    await cascade.refitted()
    for router in cascade.routers:
        assert router.index.get(OUT_OF_SCOPE) is not None


def test_a_cascade_is_of_vector_routers_only() -> None:
    with pytest.raises(ValueError, match="vector method"):
        create_router("hybrid", cascade="minilm+e5")


@pytest.fixture
def files(tmp_path, agents):
    queries = write_queries(tmp_path / "queries.csv", [*ENGLISH, *FOREIGN])
    return write_agents(tmp_path / "agents.json", agents), queries


def test_router_eval_with_cascade_reports_both_paths_and_both_gates(files, tmp_path, capsys) -> None:
    agents_file, queries_file = files
    argv = ["router", "eval", "--agents", str(agents_file), "--queries", str(queries_file), "--json"]
    assert main([*argv, "--threshold", "0", "--cascade", "e5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["paths"]) == {"cascade:fast", "cascade:accurate"}
    assert sum(report["paths"].values()) == len(ENGLISH) + len(FOREIGN)
    assert report["embedder"] == "all-MiniLM-L6-v2"
    assert report["cascade"]["embedder"] == "multilingual-e5-small-q4"
    held_out = tmp_path / "val.csv"
    held_out.write_text("text,agent\nwhat is two plus two,\nhow tall is the Eiffel tower,\n")
    assert main([*argv, "--cascade", "e5", "--calibrate", str(held_out), "--oos-recall", "1.0"]) == 0
    calibrated = json.loads(capsys.readouterr().out)
    assert calibrated["threshold"] > 0 and calibrated["cascade"]["threshold"] > 0
    assert main([*argv, "--cascade", "e5", "--method", "llm"]) == 2
    assert "vector method" in capsys.readouterr().err
