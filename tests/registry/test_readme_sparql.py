"""The README's SPARQL examples, run as written against a real directory.

Each ```sparql block of the README names the ids it must find in a ``(expect: ...)`` comment;
the test registers an agent on HTTP, one on MQTT for another tenant and a plain Thing, runs every
block and compares. So the README cannot drift from what the directory answers.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import REPO
from tests.servers import running_directory
from wot_agents import DirectoryClient, DirectoryError

BLOCK = re.compile(r"```sparql\n(.*?)```", re.S)
EXPECT = re.compile(r"\(expect: ([^)]*)\)")


def readme_queries() -> list[tuple[str, set[str]]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    queries = []
    for block in BLOCK.findall(text):
        expect = EXPECT.search(block)
        assert expect is not None, f"a README SPARQL block without (expect: ...):\n{block}"
        queries.append((block, set(expect[1].split())))
    return queries


@pytest.fixture
async def directory() -> AsyncIterator[str]:
    # A loaded machine may index three TDs slower than the default 5 s query limit allows.
    async with running_directory(query_timeout=60.0) as url:
        yield url


def test_the_readme_has_sparql_examples() -> None:
    assert len(readme_queries()) >= 4


def _billing(weather: dict[str, Any]) -> dict[str, Any]:
    td = copy.deepcopy(weather)
    td.update(id="urn:example:billing", title="Billing")
    td["lmos:supportedTenants"] = ["globex"]
    td["lmos:capabilities"] = [{"id": "urn:example:capability:billing:invoice", "name": "Invoices"}]
    td["actions"] = {
        "chat": {
            "forms": [
                {"href": "mqtt://127.0.0.1:1883", "mqv:topic": "billing/actions/chat", "op": "invokeaction"}
            ]
        }
    }
    td["@context"] = [*td["@context"][:1], {**td["@context"][1], "mqv": "http://www.w3.org/2018/wot/mqtt#"}]
    return td


def _lamp() -> dict[str, Any]:
    return {
        "@context": "https://www.w3.org/2022/wot/td/v1.1",
        "id": "urn:example:lamp",
        "title": "Lamp",
        "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
        "security": "nosec_sc",
        "properties": {"on": {"type": "boolean", "forms": [{"href": "http://127.0.0.1:9/on"}]}},
    }


@pytest.mark.parametrize(("query", "expected"), readme_queries())
async def test_readme_sparql_examples_find_what_they_say(
    directory: str, weather_agent: dict[str, Any], query: str, expected: set[str]
) -> None:
    async with DirectoryClient(directory) as client:
        for td in (weather_agent, _billing(weather_agent), _lamp()):
            await client.register(td)
        result = await client.sparql(query)
    found = {value["value"] for row in result["results"]["bindings"] for value in row.values()}
    assert found == expected


async def test_an_unknown_prefix_is_named(directory: str) -> None:
    async with DirectoryClient(directory) as client:
        with pytest.raises(DirectoryError) as caught:
            await client.sparql("SELECT ?s WHERE {\n  ?s a foo:Agent }")
    assert caught.value.status == 400
    detail = caught.value.problem["detail"]
    assert detail.startswith("unknown prefix 'foo:' at line 2, column 17") and "predeclared: td," in detail
    assert "u{" not in detail  # not the parser's Unicode ranges


async def _cli(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wot_agents.cli", "search", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_search_command_runs_filter_jsonpath_and_sparql(
    directory: str, weather_agent: dict[str, Any]
) -> None:
    async with DirectoryClient(directory) as client:
        for td in (weather_agent, _billing(weather_agent), _lamp()):
            await client.register(td)
    code, out, _ = await _cli("--directory", directory, "tenant=globex")
    assert code == 0 and out.splitlines() == ["urn:example:billing  Billing  [Invoices]"]
    code, out, _ = await _cli("--directory", directory, "type=lmos:Agent", "--json")
    assert code == 0 and {td["id"] for td in json.loads(out)} == {weather_agent["id"], "urn:example:billing"}
    code, out, _ = await _cli("--directory", directory, "--jsonpath", "$[?@.title=='Lamp'].id")
    assert code == 0 and json.loads(out) == ["urn:example:lamp"]
    code, out, _ = await _cli("--directory", directory, "--sparql", "ASK { <urn:example:lamp> a td:Thing }")
    assert code == 0 and out.strip() == "true"
    code, out, _ = await _cli(
        "--directory",
        directory,
        "--sparql",
        "SELECT ?t WHERE { ?t td:title ?title FILTER(STR(?title) = 'Lamp') }",
    )
    assert code == 0 and out.splitlines() == ["?t", "urn:example:lamp"]
    # Mistakes are a message and an exit code, not a traceback.
    code, _, err = await _cli("--directory", directory, "capabilty=forecast")
    assert code == 1 and "did you mean 'capability'?" in err and "Traceback" not in err
    code, _, err = await _cli("--directory", directory, "tenant")
    assert code == 2 and "expected FIELD=VALUE" in err
    for wait in ("nan", "-1", "soon"):  # nan would wait forever
        code, _, err = await _cli("--directory", directory, "--busy-timeout", wait, "--sparql", "ASK {}")
        assert code == 2 and "--busy-timeout" in err and "Traceback" not in err, err
    code, _, err = await _cli("--directory", "http://127.0.0.1:9", "tenant=acme")
    assert code == 1 and "Traceback" not in err
