"""Out-of-scope examples: queries no agent should take, taught to the classifier as a class."""

from __future__ import annotations

import json

from router import OUT_OF_SCOPE, VectorRouter
from wot_agents.cli import main

from .conftest import write_agents

#: General questions none of the four support agents handles (the router's negatives).
NEGATIVES = [
    "what is the capital of France",
    "how many legs does a spider have",
    "who painted the Mona Lisa",
    "tell me a joke",
    "what is the meaning of life",
    "how old is the universe",
    "who won the world cup in 2014",
    "translate hello into Japanese",
    "what is the square root of 144",
    "recommend a good novel",
]

#: Unseen questions of the same kind, and in-scope queries that must still be routed.
OUTSIDE = ["what is the capital of Peru", "who wrote Hamlet", "how far away is the moon"]
INSIDE = [
    ("is it going to snow in Oslo on Friday", "urn:test:weather"),
    ("please refund the shoes I sent back", "urn:test:billing"),
    ("get me a flight to Madrid next week", "urn:test:travel"),
    ("play something by the Beatles", "urn:test:music"),
]


async def test_examples_make_the_classifier_refuse_their_kind(minilm, agents) -> None:
    # threshold 0: without examples the router never abstains; with them an agent must be more
    # probable than the out-of-scope class to be chosen
    async with VectorRouter(minilm, threshold=0.0) as router:
        await router.add(agents)
        assert all([(await router.route(text)).agent_id for text in OUTSIDE])
        await router.set_out_of_scope(NEGATIVES)
        await router.refitted()  # the class counts once the classifier has learnt it
        for text in OUTSIDE:
            decision = await router.route(text)
            assert decision.agent_id is None and decision.score < 0, decision
            assert OUT_OF_SCOPE not in dict(decision.ranking)
        for text, expected in INSIDE:
            decision = await router.route(text)
            assert decision.agent_id == expected and decision.score > 0, decision
        await router.set_out_of_scope([])  # forgotten: back to never abstaining
        assert all([(await router.route(text)).agent_id for text in OUTSIDE])


async def test_candidates_never_drop_the_out_of_scope_class(minilm, agents) -> None:
    async with VectorRouter(minilm, threshold=0.0) as router:
        await router.add(agents)
        await router.set_out_of_scope(NEGATIVES)
        billing = [agents[1]]  # one candidate: without the class it would take any query
        assert (await router.route("who painted the Sistine Chapel", candidates=billing)).agent_id is None
        assert (await router.route("refund my order", candidates=billing)).agent_id == "urn:test:billing"


async def test_similarity_rules_ignore_the_examples(minilm, agents) -> None:
    async with VectorRouter(minilm, rule="nearest", threshold=0.0) as router:
        await router.add(agents)
        await router.set_out_of_scope(NEGATIVES)
        decision = await router.route(NEGATIVES[0])  # the very text of an example
        assert decision.agent_id is not None and decision.agent_id != OUT_OF_SCOPE
        assert OUT_OF_SCOPE not in dict(decision.ranking)


def test_route_and_eval_take_examples_from_a_queries_file(agents, tmp_path, capsys) -> None:
    agents_file = write_agents(tmp_path / "agents.json", agents)
    negatives = tmp_path / "negatives.csv"
    negatives.write_text("text,agent\n" + "".join(f"{text},\n" for text in NEGATIVES))
    route = ["route", "--agents", str(agents_file), "--threshold", "0"]
    assert main([*route, "who wrote Hamlet"]) == 0  # no examples: some agent takes it
    capsys.readouterr()
    assert main([*route, "--out-of-scope", str(negatives), "--json", "who wrote Hamlet"]) == 3
    assert json.loads(capsys.readouterr().out)["agentId"] is None
    assert main([*route, "--out-of-scope", str(negatives), "refund my order"]) == 0
    capsys.readouterr()
    assert main([*route, "--out-of-scope", str(negatives), "--method", "llm", "hi"]) == 2
    assert "--method vector or hybrid" in capsys.readouterr().err
    in_scope = tmp_path / "in-scope.csv"
    in_scope.write_text("text,agent\nrefund my order,urn:test:billing\n")
    assert main([*route, "--out-of-scope", str(in_scope), "hi"]) == 2
    assert "no row with an empty agent column" in capsys.readouterr().err
