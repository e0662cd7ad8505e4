"""MiniLM fine-tuned on the agents' examples, and a cascade to MiniLM joined with e5 when unsure."""

import asyncio

from router import CascadeRouter, ConcatEmbedder, E5Embedder, VectorRouter, load_agents, tune_minilm


async def main() -> None:
    agents = load_agents("examples/agents.json")
    tuned = await asyncio.to_thread(tune_minilm, agents)  # or: wot-agents router tune --agents A.json
    async with CascadeRouter(
        VectorRouter(tuned),  # threshold=...: calibrate it on held-out queries (router eval --calibrate)
        VectorRouter(ConcatEmbedder(tuned, E5Embedder())),
    ) as router:
        await router.add(agents)
        await router.set_out_of_scope(["what is the capital of Peru", "tell me a joke"])
        await router.refitted()
        decision = await router.route("will it rain on Sunday?")
        print(decision.agent_id, decision.method)


asyncio.run(main())
