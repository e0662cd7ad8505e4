"""``wot-agents route`` and ``wot-agents router eval`` on small agent and query files."""

from __future__ import annotations

import json

import pytest

from router import Decision, LabelledQuery
from router._eval import score
from wot_agents.cli import main

from .conftest import write_agents, write_queries


@pytest.fixture
def files(tmp_path, agents):
    rows = [
        ("will it be windy tomorrow", "urn:test:weather"),
        ("refund please", "urn:test:billing"),
        ("book a hotel room in Oslo", "urn:test:travel"),
        ("play my favourite song", "urn:test:music"),
        ("what is the square root of nine", ""),
    ]
    return write_agents(tmp_path / "agents.json", agents), write_queries(tmp_path / "queries.csv", rows)


def test_route_prints_the_decision(files, capsys) -> None:
    agents_file, _ = files
    assert main(["route", "--agents", str(agents_file), "--threshold", "0", "--json", "refund my order"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["agentId"] == "urn:test:billing" and decision["method"] == "vector"
    assert main(["route", "--agents", str(agents_file), "--threshold", "1.01", "refund my order"]) == 3
    assert "(none: abstained)" in capsys.readouterr().out


def test_router_eval_reports_accuracy_and_latency(files, capsys) -> None:
    agents_file, queries_file = files
    argv = [
        "router",
        "eval",
        "--agents",
        str(agents_file),
        "--queries",
        str(queries_file),
        "--threshold",
        "0",
    ]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["queries"] == 5 and report["inScopeAccuracy"] == 1.0
    assert report["outOfScopeRecall"] == 0.0  # a zero threshold never abstains
    assert report["latencyMs"]["p50"] > 0 and report["paths"] == {"vector": 5}
    assert main([*argv, "--embedder", "wordllama", "--rule", "centroid"]) == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "latency         p50" in text and "per agent" in text
    assert main([*argv, "--embedder", "minilm+e5", "--json"]) == 0
    joined = json.loads(capsys.readouterr().out)
    assert (
        joined["embedder"] == "all-MiniLM-L6-v2+multilingual-e5-small-q4" and joined["inScopeAccuracy"] == 1.0
    )
    assert main([*argv, "--embedder", "minilm+bert"]) == 2
    assert "unknown embedder 'bert'" in capsys.readouterr().err


def test_router_eval_calibrates_on_a_held_out_file(files, tmp_path, capsys) -> None:
    agents_file, queries_file = files
    held_out = tmp_path / "val.csv"
    held_out.write_text("text,agent\nwhat is two plus two,\nhow tall is the Eiffel tower,\n")
    argv = ["router", "eval", "--agents", str(agents_file), "--queries", str(queries_file), "--json"]
    assert main([*argv, "--calibrate", str(held_out), "--oos-recall", "1.0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["threshold"] > 0


def test_usage_errors_exit_2(tmp_path, capsys) -> None:
    missing = tmp_path / "missing.json"
    assert main(["route", "--agents", str(missing), "hello"]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a list"}')
    assert main(["route", "--agents", str(bad), "hello"]) == 2
    assert "JSON array" in capsys.readouterr().err


def test_score_counts_precision_recall_and_out_of_scope() -> None:
    queries = [
        LabelledQuery("a", "x"),
        LabelledQuery("b", "x"),
        LabelledQuery("c", "y"),
        LabelledQuery("d", None),
    ]
    decisions = [Decision(agent, 1.0, "", "vector") for agent in ("x", "y", "y", None)]
    report = score(queries, decisions, [1.0, 2.0, 3.0, 4.0], method="vector")
    assert report.accuracy == 0.75 and report.in_scope_accuracy == pytest.approx(2 / 3)
    assert report.out_of_scope_recall == 1.0
    assert report.per_agent["x"] == {
        "precision": 1.0,
        "recall": 0.5,
        "f1": pytest.approx(2 / 3),
        "support": 2,
    }
    assert report.per_agent["y"]["precision"] == 0.5
    assert report.confusions == [("x", "y", 1)]


def test_route_takes_the_agents_of_a_directory(agents, capsys) -> None:
    # --agents URL: every description registered in a real directory (a separate process).
    import subprocess
    import sys
    import urllib.request
    from urllib.parse import quote

    directory = subprocess.Popen(
        [sys.executable, "-m", "wot_agents.cli", "directory", "--memory", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert directory.stdout is not None
        line = directory.stdout.readline()
        url = line.split("listening on ")[1].split()[0].rstrip("/")
        for td in agents:
            request = urllib.request.Request(
                f"{url}/things/{quote(str(td.id), safe='')}",
                data=td.to_json().encode(),
                method="PUT",
                headers={"Content-Type": "application/td+json"},
            )
            with urllib.request.urlopen(request) as response:
                assert response.status in (201, 204)
        assert main(["route", "--agents", url, "--threshold", "0", "--json", "refund my order"]) == 0
        assert json.loads(capsys.readouterr().out)["agentId"] == "urn:test:billing"
        assert main(["route", "--agents", "http://127.0.0.1:9", "refund my order"]) == 2
        assert "cannot read the agents of the directory at http://127.0.0.1:9" in capsys.readouterr().err
    finally:
        directory.terminate()
        directory.wait(timeout=30)
        assert directory.stdout is not None
        directory.stdout.close()
