"""Fine-tuning MiniLM on the agents' examples: it separates their capabilities better, and is cached."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from router import TunedMiniLMEmbedder, TuningSettings, tune_minilm
from router._tuning import training_examples, tuning_key
from wot_agents.cli import main

from .conftest import make_agent, write_agents

#: Four close banking capabilities: (name, training examples, held-out queries).
CAPABILITIES = [
    (
        "card_arrival",
        [
            "when will my new card arrive",
            "my card still has not come in the post",
            "how long does card delivery take",
            "I ordered a card last week and it is not here",
            "track the delivery of my card",
            "is my card on its way",
            "the card you sent me never arrived",
            "how many days until I receive my card",
        ],
        ["where is the card I ordered", "my replacement card is taking forever to get here"],
    ),
    (
        "card_lost",
        [
            "I lost my card",
            "my card was stolen",
            "I cannot find my card anywhere",
            "someone took my wallet with my card",
            "block my card, it is missing",
            "I left my card in a taxi",
            "freeze my card because I misplaced it",
            "my card is gone",
        ],
        ["I think I dropped my card at the shop", "a thief has my debit card"],
    ),
    (
        "transfer_pending",
        [
            "why is my transfer still pending",
            "the money I sent has not arrived yet",
            "my bank transfer is stuck",
            "how long does a transfer take to go through",
            "the payment to my friend is still processing",
            "my transfer has not been completed",
            "when will the recipient get my transfer",
            "the transfer I made yesterday is not showing on their account",
        ],
        ["my friend still has not received the money I sent", "the transfer says in progress for days"],
    ),
    (
        "top_up_failed",
        [
            "my top up failed",
            "I could not add money to my account",
            "the top up was declined",
            "why did my top-up not go through",
            "adding funds with my card did not work",
            "top up error",
            "I tried to load money and it was rejected",
            "the top up keeps failing",
        ],
        ["the money I tried to add to my account was refused", "topping up does not work"],
    ),
]

SMALL = TuningSettings(epochs=30, classes_per_batch=4, per_class=4)


def banking_agents():
    return [
        make_agent(
            "urn:test:cards",
            "Card services",
            "Cards: delivery, loss and theft.",
            [(name, name.replace("_", " "), train) for name, train, _ in CAPABILITIES[:2]],
        ),
        make_agent(
            "urn:test:payments",
            "Payments",
            "Transfers and top ups.",
            [(name, name.replace("_", " "), train) for name, train, _ in CAPABILITIES[2:]],
        ),
    ]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> tuple[TunedMiniLMEmbedder, list[str], Path]:
    cache_dir = tmp_path_factory.mktemp("tuned")
    lines: list[str] = []
    embedder = tune_minilm(banking_agents(), settings=SMALL, cache_dir=cache_dir, log=lines.append)
    return embedder, lines, cache_dir


def margins(embedder) -> np.ndarray:
    """Per held-out query: cosine to its capability's centroid minus the best other centroid."""
    centroids = np.stack([embedder.embed(train).mean(axis=0) for _, train, _ in CAPABILITIES])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    out = []
    for number, (_, _, held_out) in enumerate(CAPABILITIES):
        sims = embedder.embed(held_out) @ centroids.T
        out.extend(sims[:, number] - np.delete(sims, number, axis=1).max(axis=1))
    return np.asarray(out)


def test_tuned_model_separates_held_out_queries_better(tuned, minilm) -> None:
    embedder, lines, _ = tuned
    assert lines and lines[-1].startswith(f"tuning step {lines[-1].split()[2]}")  # it trained
    base, after = margins(minilm), margins(embedder)
    assert after.mean() > base.mean() + 0.01, (base.mean(), after.mean())  # measured: 0.203 -> 0.227
    assert (after > 0).sum() >= (base > 0).sum()  # no more held-out queries on the wrong side
    assert embedder.dim == 384 and embedder.name != minilm.name  # its own embedding-cache namespace


def test_tuned_model_is_reused_and_keyed_by_the_training_texts(tuned) -> None:
    embedder, _, cache_dir = tuned
    stamp = embedder.path.stat().st_mtime_ns
    lines: list[str] = []
    again = tune_minilm(
        list(reversed(banking_agents())), settings=SMALL, cache_dir=cache_dir, log=lines.append
    )
    assert again.path == embedder.path and not lines and embedder.path.stat().st_mtime_ns == stamp
    examples = training_examples(banking_agents())
    changed = [("my card has not arrived", pair[1]) if i == 5 else pair for i, pair in enumerate(examples)]
    assert tuning_key(changed, SMALL) != embedder.key
    assert tuning_key(examples, TuningSettings(epochs=31, classes_per_batch=4, per_class=4)) != embedder.key


def test_router_tune_then_eval_reuses_the_tuned_model(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("WOT_AGENTS_CACHE", str(tmp_path / "cache"))
    agents_file = write_agents(tmp_path / "agents.json", banking_agents())
    queries_file = tmp_path / "queries.csv"
    queries_file.write_text(
        "text,agent\n"
        + "".join(
            f"{query},{'urn:test:cards' if number < 2 else 'urn:test:payments'}\n"
            for number, (_, _, held_out) in enumerate(CAPABILITIES)
            for query in held_out
        )
    )
    assert main(["router", "tune", "--agents", str(agents_file)]) == 0
    printed = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert Path(printed["path"]).is_file() and printed["path"].startswith(str(tmp_path / "cache" / "tuned"))
    argv = ["router", "eval", "--agents", str(agents_file), "--queries", str(queries_file)]
    assert main([*argv, "--tune", "--threshold", "0", "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["embedder"] == printed["model"] and "tuning step" not in err  # from the cache
    assert report["accuracy"] >= 0.75
    assert main([*argv, "--tune", "--embedder", "wordllama"]) == 2
    assert main([*argv, "--tune", "--embedder", "minilm+e5", "--threshold", "0", "--json"]) == 0
    out, err = capsys.readouterr()
    joined = json.loads(out)  # the cached tuned MiniLM, joined to e5 as the embedder names it
    assert joined["embedder"] == printed["model"] + "+multilingual-e5-small-q4" and "tuning step" not in err
    held_out = tmp_path / "val.csv"
    held_out.write_text("text,agent\nwhat is the capital of France,\ntell me a joke,\nhow tall is Everest,\n")
    calibrate = ["--tune", "--calibrate", str(held_out), "--oos-recall", "1", "--json"]
    assert main([*argv, *calibrate, "--gate", "similarity"]) == 0
    gated = json.loads(capsys.readouterr().out)
    assert gated["threshold"] is None and 0 < gated["similarity"] < 1  # the similarity gate alone
