"""Real components for the router tests: the MiniLM and wordllama models, a llama.cpp server.

A tiny aiohttp server speaking the OpenAI chat API stands in for the LLM only in the fault
tests (bad JSON, unknown agent ids, timeouts, rate limits): a real model cannot be made to fail
on cue.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from router import EmbeddingCache, WordLlamaEmbedder
from tests.servers import llama_cpp_server
from wot_agents import AgentDescription, serve_app

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CONTEXT = ["https://www.w3.org/2022/wot/td/v1.1", {"lmos": "https://eclipse.dev/lmos/protocol/v1"}]


def make_agent(
    agent_id: str,
    title: str,
    description: str,
    capabilities: list[tuple[str, str, list[str]]],
    **extra: Any,
) -> AgentDescription:
    return AgentDescription.from_dict(
        {
            "@context": CONTEXT,
            "@type": "lmos:Agent",
            "id": agent_id,
            "title": title,
            "description": description,
            "lmos:capabilities": [
                {"id": f"{agent_id}:{name}", "name": name, "description": text, "examples": examples}
                for name, text, examples in capabilities
            ],
            "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
            "security": "nosec_sc",
            **extra,
        }
    )


def support_agents() -> list[AgentDescription]:
    """Four customer-support agents with a few example utterances each."""
    return [
        make_agent(
            "urn:test:weather",
            "Weather agent",
            "Answers questions about the weather and forecasts.",
            [
                (
                    "forecast",
                    "weather forecast for a place and day",
                    [
                        "will it rain tomorrow?",
                        "how warm is it in Paris",
                        "weather this weekend",
                        "is it sunny today",
                    ],
                )
            ],
        ),
        make_agent(
            "urn:test:billing",
            "Billing agent",
            "Invoices, payments and refunds.",
            [
                (
                    "refund",
                    "refunds for returned products",
                    [
                        "I want my money back",
                        "refund my order",
                        "how do I get a refund",
                        "return and reimburse",
                    ],
                ),
                (
                    "invoice",
                    "invoices and bills",
                    [
                        "send me my invoice",
                        "where is my bill",
                        "download the invoice",
                        "the invoice is wrong",
                    ],
                ),
            ],
        ),
        make_agent(
            "urn:test:travel",
            "Travel agent",
            "Books flights and hotels.",
            [
                (
                    "booking",
                    "flight and hotel booking",
                    [
                        "book a flight to Rome",
                        "I need a hotel in Berlin",
                        "reserve a plane ticket",
                        "find me a room",
                    ],
                )
            ],
        ),
        make_agent(
            "urn:test:music",
            "Music agent",
            "Plays songs and manages playlists.",
            [
                (
                    "play",
                    "play music",
                    ["play some jazz", "put on my playlist", "next song please", "play the latest album"],
                )
            ],
        ),
    ]


def write_agents(path: Path, agents: Sequence[AgentDescription]) -> Path:
    """AGENTS.json, as ``wot-agents route`` and ``router eval`` read it."""
    path.write_text(json.dumps([agent.to_dict() for agent in agents]))
    return path


def write_queries(path: Path, rows: Iterable[tuple[str, str]]) -> Path:
    """QUERIES.csv: ``text,agent`` rows, an empty agent marking an out-of-scope query."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "agent"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def wordllama() -> WordLlamaEmbedder:
    return WordLlamaEmbedder()


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[EmbeddingCache]:
    store = EmbeddingCache(tmp_path / "embeddings.sqlite")
    yield store
    store.close()


@pytest.fixture(scope="session")
def llama_embeddings() -> Iterator[str]:
    """SmolLM2 serving ``/v1/embeddings``."""
    with llama_cpp_server("--n_ctx", "256", "--embedding", "true") as base_url:
        yield base_url


Reply = Callable[[dict[str, Any]], Any]


class FakeOpenAI:
    """An OpenAI chat endpoint whose replies a test scripts: each call pops the next reply.

    A reply is a string (the message content), an int (an HTTP error status) or a float
    (seconds to stall before answering, to provoke a client timeout).
    """

    def __init__(self) -> None:
        self.replies: list[str | int | float] = []
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        reply = self.replies.pop(0) if self.replies else '{"agentId": null, "reason": "script exhausted"}'
        if isinstance(reply, float):
            await asyncio.sleep(reply)
            reply = '{"agentId": null, "reason": "late"}'
        if isinstance(reply, int):
            return web.json_response(
                {"error": {"message": "scripted failure"}}, status=reply, headers={"retry-after-ms": "10"}
            )
        return web.json_response(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "x"),
                "choices": [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply}}
                ],
            }
        )


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    async with serve_app(app, shutdown_timeout=0.1) as url:
        fake.base_url = f"{url}/v1"
        yield fake


@pytest.fixture
def agents() -> list[AgentDescription]:
    return support_agents()


@pytest.fixture(name="make_agent")
def make_agent_fixture() -> Callable[..., AgentDescription]:
    return make_agent
