"""Route a query to the agent that fits it (run from the repository's root)."""

import asyncio

from router import AgentFilter, VectorRouter, load_agents


async def main() -> None:
    agents = load_agents("examples/agents.json")  # a JSON array of Agent Descriptions
    # "minilm": all-MiniLM-L6-v2 from PyPI, offline; "wordllama" is tiny, "e5" multilingual,
    # "minilm+e5" the most accurate
    async with VectorRouter("minilm") as vector:
        await vector.add(agents)  # only new or changed ones are embedded
        await vector.refitted()  # the decision rule has learnt every agent
        where = AgentFilter(tenant="acme", channel="web")
        decision = await vector.route("I want my money back", history=[], candidates=None, where=where)
        print(decision.agent_id, decision.score, decision.reason, decision.method)  # agent_id None: none fits
        decision = await vector.route("what is the capital of Peru?")
        print(decision.agent_id, decision.reason)


asyncio.run(main())
