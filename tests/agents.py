"""The agents tests serve for real, shared by every test package (never imported from a conftest).

``make_agent``: an agent with one affordance of each kind (bindings, interop). ``chat_agent``,
``Deployment`` and ``body``: LMOS chat agents, a directory they register in and a runtime
following it (runtime, trust and page tests; the ``deployment`` fixture of tests/conftest.py); ``post`` and
``sse``: a chat turn sent to a runtime, answered as JSON or as server-sent events.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
from pydantic import BaseModel

from router import MiniLMEmbedder, VectorRouter
from runtime import CatalogSource, Runtime, RuntimeSettings, create_app
from wot_agents import (
    Agent,
    Capability,
    ChatReply,
    ChatRequest,
    ChatStream,
    DirectoryClient,
    chat_handler,
    serve_app,
)
from wot_agents.bindings import RunningAgent

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: (id, title, capability, examples): three LMOS agents of tenant acme, channel web.
AGENTS = {
    "weather": (
        "urn:test:agent:weather",
        "WeatherAgent",
        "Weather forecasts for a place and a day.",
        ["will it rain tomorrow?", "how warm is it in Paris", "weather this weekend", "is it sunny today"],
    ),
    "billing": (
        "urn:test:agent:billing",
        "BillingAgent",
        "Invoices, bills, payments and refunds.",
        ["send me my invoice", "where is my bill", "I want a refund", "how much do I owe"],
    ),
    "travel": (
        "urn:test:agent:travel",
        "TravelAgent",
        "Books flights and hotels.",
        ["book a flight to Rome", "I need a hotel in Berlin", "reserve a plane ticket", "find me a room"],
    ),
}


def chat_agent(
    name: str,
    *,
    agent_id: str | None = None,
    tenants: Sequence[str] | None = ("acme",),
    channels: Sequence[str] | None = ("web",),
    subset: str | None = None,
    answer: Callable[[ChatRequest, ChatStream], Any] | None = None,
    version: str = "1.0.0",
) -> Agent:
    """An SDK agent answering ``"<title>: <last message>"`` (or as ``answer`` says), word by word."""
    default_id, title, description, examples = AGENTS[name]
    agent = Agent(
        title,
        id=agent_id or default_id,
        description=description,
        capabilities=[
            Capability(
                id=f"urn:test:capability:{name}",
                name=name,
                version=version,
                description=description,
                examples=examples,
            )
        ],
        tenants=list(tenants) if tenants is not None else None,
        channels=list(channels) if channels is not None else None,
        subset=subset,
    )

    async def reply(request: ChatRequest, stream: ChatStream) -> str | ChatReply:
        if answer is not None:
            result = answer(request, stream)
            result = await result if asyncio.iscoroutine(result) else result
            return result if isinstance(result, ChatReply) else str(result)
        text = f"{title}: {request.messages[-1].content}"
        for index, word in enumerate(text.split(" ")):
            await stream.send(word if index == 0 else " " + word)
        return text

    chat_handler(agent)(reply)
    return agent


class Deployment:
    """A directory, agents registered in it, and a runtime following the directory."""

    def __init__(self, directory: str, stack: AsyncExitStack, minilm: MiniLMEmbedder) -> None:
        self.directory = directory
        self.stack = stack
        self.minilm = minilm
        self.agents: dict[str, RunningAgent] = {}
        self.runtime: Runtime | None = None
        self.url = ""

    async def add(self, agent: Agent, **serve: Any) -> RunningAgent:
        running = await self.stack.enter_async_context(agent.serve(**serve))
        await self.register(running)
        return running

    async def register(self, running: RunningAgent) -> None:
        """Register an agent served by the test itself (which may then stop it)."""
        async with DirectoryClient(self.directory) as client:
            await client.register(running.description.to_dict())
        self.agents[running.description.id or ""] = running

    async def remove(self, agent_id: str) -> None:
        async with DirectoryClient(self.directory) as client:
            await client.delete(agent_id)

    async def start(self, *, source: CatalogSource | None = None, **settings: Any) -> str:
        options: dict[str, Any] = {"directory": self.directory, **settings}
        router = None
        if options.get("router", "vector") == "vector":
            router = VectorRouter(self.minilm)
            self.stack.push_async_callback(router.aclose)
        self.runtime = Runtime(RuntimeSettings(**options), router=router, source=source)
        self.url = await self.stack.enter_async_context(
            serve_app(create_app(runtime=self.runtime), shutdown_timeout=1)
        )
        await self.wait_for(len(self.agents))
        async with asyncio.timeout(60):
            await self.runtime.warmed.wait()
        return self.url

    async def wait_for(self, count: int) -> None:
        assert self.runtime is not None
        async with asyncio.timeout(20):
            await self.runtime.catalog.wait_for(lambda catalog: len(catalog) == count)


def body(query: str, *, channel: str = "web", explicit: str | None = None, **extra: Any) -> dict[str, Any]:
    """An LMOS chat request body."""
    input_context: dict[str, Any] = {"messages": [{"role": "user", "format": "text", "content": query}]}
    if explicit:
        input_context["explicitAgent"] = explicit
    return {
        "inputContext": input_context,
        "systemContext": {"channelId": channel},
        "userContext": {"userId": "user456"},
        **extra,
    }


async def post(
    http: aiohttp.ClientSession,
    url: str,
    payload: Any,
    *,
    turn: str | None = "turn-1",
    prefix: str = "/apis/v1",
    tenant: str = "acme",
    conversation: str = "conv-1",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST an LMOS chat turn: the status and the JSON answer."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if turn is not None:
        sent["x-turn-id"] = turn
    data = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    async with http.post(
        f"{url}{prefix}/{tenant}/chat/{conversation}/message", data=data, headers=sent
    ) as reply:
        return reply.status, await reply.json()


async def sse(http: aiohttp.ClientSession, url: str, payload: Any, turn: str = "t1") -> tuple[int, list[Any]]:
    """POST with Accept: text/event-stream; the (event, data) pairs, or the JSON error."""
    headers = {"Accept": "text/event-stream", "x-turn-id": turn}
    async with http.post(f"{url}/apis/v1/acme/chat/c1/message", json=payload, headers=headers) as reply:
        if reply.content_type != "text/event-stream":
            return reply.status, [await reply.json()]
        events: list[Any] = []
        kind = ""
        async for raw in reply.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
        return reply.status, events


class Alert(BaseModel):
    level: int
    text: str


def make_agent() -> Agent:
    """Actions (plain, slow, failing, asynchronous), properties (observable, read-only), an event."""
    agent = Agent("Test Weather", id="urn:test:weather", description="Answers weather questions.")

    @agent.action(description="Adds two numbers.")
    async def add(a: int, b: int = 1) -> int:
        return a + b

    @agent.action(description="Waits, then answers.")
    async def wait(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    @agent.action(description="Always fails.")
    async def broken() -> str:
        raise RuntimeError("the weather service is down")

    @agent.action(description="Runs in the background.", synchronous=False)
    async def long_job(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "finished"

    agent.property("temperature", float, default=20.0, observable=True, unit="celsius")
    agent.property("station", str, default="Berlin", writable=False)
    agent.event("alert", Alert)
    return agent
