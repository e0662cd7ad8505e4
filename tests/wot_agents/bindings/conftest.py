"""An agent with one affordance of each kind, served over every binding, and its consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.agents import make_agent
from wot_agents import Agent, AgentDescription
from wot_agents.bindings import RunningAgent

BINDINGS = ("http", "ws", "mqtt")


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
