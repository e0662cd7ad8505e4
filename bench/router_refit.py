"""What the classifier rule's fits cost, cold and warm-started, and routing while a refit runs.

    python bench/router_refit.py [--agents 150,1000] [--sklearn]

Agents: one capability of 10 CLINC train utterances each (bench/router_datasets.scale_agents),
MiniLM embeddings (cached on disk). For each size: the cold fit, the warm refit after one agent is
added and after one is removed, and the route latency (p50/p99 of the CLINC test queries) while
the refit after adding 10 more agents runs in the background. ``--sklearn`` also times
scikit-learn's ``LogisticRegression`` (lbfgs) cold on the same rows, the fit the router used
before. Skips with a message when ../shared/data/routing is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import router_datasets

from router import EmbeddingCache, VectorRouter
from wot_agents import AgentDescription


def load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


async def timed_refit(router: VectorRouter) -> float:
    start = time.perf_counter()
    await router.refitted()
    return time.perf_counter() - start


def sklearn_fit(router: VectorRouter) -> float:
    from sklearn.linear_model import LogisticRegression

    data = router.index.snapshot()
    _, target = np.unique(np.stack([data.owner, data.label], axis=1), axis=0, return_inverse=True)
    start = time.perf_counter()
    LogisticRegression(C=router.classifier_strength, max_iter=1000).fit(data.vectors, target.ravel())
    return time.perf_counter() - start


async def run(count: int, cache: EmbeddingCache, with_sklearn: bool) -> None:
    raw, queries = router_datasets.scale_agents(count + 11)
    agents = [AgentDescription.from_dict(agent) for agent in raw]
    async with VectorRouter("minilm", threshold=0.0, cache=cache, refit_delay=0.05) as router:
        await router.add(agents[:count])
        router.embed_query("warm up")
        print(f"{count} agents: cold fit {await timed_refit(router):.2f} s ({load()})", flush=True)
        if with_sklearn:
            elapsed = await asyncio.to_thread(sklearn_fit, router)
            print(f"{count} agents: scikit-learn lbfgs cold fit {elapsed:.2f} s ({load()})", flush=True)
        await router.add(agents[count : count + 1])
        print(f"{count} agents: +1 agent, warm refit {await timed_refit(router):.2f} s", flush=True)
        await router.remove(agents[0].id or "")
        print(f"{count} agents: -1 agent, warm refit {await timed_refit(router):.2f} s", flush=True)
        await router.add(agents[count + 1 :])  # ten more: the background refit starts
        latencies = []
        during = 0
        for query in queries:
            start = time.perf_counter()
            await router.route(query)
            latencies.append((time.perf_counter() - start) * 1000)
            during += router.refit_pending
        latencies.sort()
        print(
            f"{count} agents: routing while +10 agents refit: p50 {latencies[len(latencies) // 2]:.2f} ms"
            f"  p99 {latencies[int(len(latencies) * 0.99)]:.2f} ms  ({during} of {len(queries)} queries "
            f"answered before the refit landed; {load()})",
            flush=True,
        )
        print(f"{count} agents: the rest of that refit {await timed_refit(router):.2f} s", flush=True)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="150,1000")
    parser.add_argument("--sklearn", action="store_true", help="also time scikit-learn's fit")
    args = parser.parse_args()
    if router_datasets.missing():
        return 0
    print(f"machine: {router_datasets.machine()}")
    cache = EmbeddingCache()
    try:
        for count in args.agents.split(","):
            await run(int(count), cache, args.sklearn)
    finally:
        cache.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
