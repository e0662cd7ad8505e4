"""Agents with identities, served for real on loopback."""

from __future__ import annotations

from wot_agents import Agent


def make_agent(title: str = "Signed Weather", thing_id: str = "urn:test:signed-weather") -> Agent:
    agent = Agent(title, id=thing_id, description="Answers weather questions, and signs what it says.")

    @agent.action(description="Adds two numbers.")
    async def add(a: int, b: int = 1) -> int:
        return a + b

    agent.property("station", str, default="Berlin", writable=False)
    return agent
