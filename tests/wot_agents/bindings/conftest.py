"""An agent with one affordance of each kind, served over every binding, and its consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import BaseModel

from wot_agents import Agent, AgentDescription
from wot_agents.bindings import RunningAgent

BINDINGS = ("http", "ws", "mqtt")


class Alert(BaseModel):
    level: int
    text: str


def make_agent() -> Agent:
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


@pytest.fixture
def agent() -> Agent:
    return make_agent()


@pytest.fixture
async def running(agent: Agent, mosquitto: str) -> AsyncIterator[RunningAgent]:
    async with agent.serve(http=True, ws=True, mqtt=mosquitto) as running:
        yield running


@pytest.fixture
def td(running: RunningAgent) -> AgentDescription:
    return running.description


async def emit_until(
    coro_factory: Any, received: asyncio.Future[Any] | None = None, count: int = 100
) -> None:
    """Keep producing values until the consumer got one (streams open asynchronously on some bindings)."""
    for _ in range(count):
        await coro_factory()
        await asyncio.sleep(0.02)
