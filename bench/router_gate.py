"""Abstention gates across agent-set sizes: the classifier's probability vs the query's similarity.

    python bench/router_gate.py [--subsets 30] [--sizes 3,5,10,20] [--embedder minilm|wordllama]

The classifier's probabilities depend on how many agents share them (with 3 agents the best one
never scores under 1/3), so a probability threshold calibrated on CLINC150's 150 agents does not
transfer to small deployments. The cosine similarity between the query and the chosen agent's
closest text does not depend on the other agents. This script calibrates both gates on CLINC150
VAL (150 intent agents, out-of-scope val queries) and reports on TEST:

- all 150 agents: in-scope accuracy / out-of-scope recall for each gate alone and both;
- random subsets of N intent agents (seeded): in-scope = test queries of the subset's intents,
  out of scope = CLINC's out-of-scope test queries plus test queries of intents outside the subset.

Skips with a message when ../shared/data/routing is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import router_datasets

from router import EmbeddingCache, VectorRouter, calibrate_threshold, get_embedder, with_cache
from wot_agents import AgentDescription

Row = tuple[str, str | None]


async def decisions(
    router: VectorRouter, vectors: dict[str, np.ndarray], rows: list[Row]
) -> list[tuple[str | None, float, float]]:
    """Per row: the chosen agent (never abstaining), its score and its similarity to the query."""
    await router.refitted()
    out = []
    for text, _ in rows:
        query = vectors[text]
        ranking, _ = router.rank(query, None)
        agent, score, _ = ranking[0]
        out.append((agent.id, score, router.index.similarity(agent.slot, query)))
    return out


def rates(
    rows: list[Row], chosen: list[tuple[str | None, float, float]], score: float, sim: float
) -> np.ndarray:
    """(in-scope accuracy, out-of-scope recall) in percent when abstaining under either gate."""
    in_scope = [(row, c) for row, c in zip(rows, chosen, strict=True) if row[1] is not None]
    out = [c for row, c in zip(rows, chosen, strict=True) if row[1] is None]
    right = sum(1 for (row, (agent, s, m)) in in_scope if agent == row[1] and s >= score and m >= sim)
    refused = sum(1 for (_, s, m) in out if s < score or m < sim)
    return np.array([100 * right / len(in_scope), 100 * refused / len(out)])


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subsets", type=int, default=30)
    parser.add_argument("--sizes", default="3,5,10,20")
    parser.add_argument("--embedder", default="minilm", help="minilm, wordllama, minilm+e5, ...")
    parser.add_argument("--recall", type=float, default=0.9, help="val out-of-scope recall to calibrate for")
    args = parser.parse_args()
    if router_datasets.missing():
        return 0
    print(f"machine: {router_datasets.machine()}")
    agents, val, test = router_datasets.clinc()["clinc-oos"]
    described = [AgentDescription.from_dict(agent) for agent in agents]
    cache = EmbeddingCache()
    embedder = with_cache(get_embedder(args.embedder), cache)
    texts = sorted({text for text, _ in val + test})
    vectors = dict(zip(texts, embedder.embed(texts), strict=True))
    async with VectorRouter(embedder, threshold=0.0, cache=cache) as router:
        await router.add(described)
        on_val, on_test = await decisions(router, vectors, val), await decisions(router, vectors, test)
    val_oos = [c for row, c in zip(val, on_val, strict=True) if row[1] is None]
    # each gate alone, then both: the similarity gate refuses a share of the target, the probability the rest
    score_only = calibrate_threshold([s for _, s, _ in val_oos], args.recall)
    gates = {f"probability >= {score_only:.4f}": (score_only, -1.0)}
    for share in (0.5, 0.8, 0.9):
        sim = calibrate_threshold([m for _, _, m in val_oos], args.recall * share)
        passed = [s for _, s, m in val_oos if m >= sim]
        score = calibrate_threshold(passed, 1 - (1 - args.recall) * len(val_oos) / len(passed))
        gates[f"probability >= {score:.4f} and similarity >= {sim:.4f}"] = (score, sim)
    sim_only = calibrate_threshold([m for _, _, m in val_oos], args.recall)
    gates[f"similarity >= {sim_only:.4f}"] = (-1.0, sim_only)
    print(f"calibrated on CLINC150 val to refuse {args.recall:.0%} of its out-of-scope queries")
    for name, (score, sim) in gates.items():
        inside, refused = rates(test, on_test, score, sim)
        print(
            f"150 agents  {name:<58} in-scope {inside:6.2f}%  out-of-scope recall {refused:6.2f}%", flush=True
        )
    by_intent: dict[str, list[AgentDescription]] = {agent.id or "": [agent] for agent in described}
    rng = random.Random(router_datasets.SEED)
    for size in [int(size) for size in args.sizes.split(",")]:
        results: dict[str, list[np.ndarray]] = {name: [] for name in gates}
        for _ in range(args.subsets):
            chosen_ids = set(rng.sample(sorted(by_intent), size))
            rows = [(text, agent if agent in chosen_ids else None) for text, agent in test]
            in_scope = [row for row in rows if row[1] is not None]
            outside = rng.sample([row for row in rows if row[1] is None], 4 * len(in_scope))
            sample = in_scope + outside
            async with VectorRouter(embedder, threshold=0.0) as router:
                await router.add([by_intent[agent_id][0] for agent_id in sorted(chosen_ids)])
                chosen = await decisions(router, vectors, sample)
            for name, (score, sim) in gates.items():
                results[name].append(rates(sample, chosen, score, sim))
        for name, pairs in results.items():
            inside, refused = np.mean(pairs, axis=0)
            print(
                f"{size:>3} agents  {name:<58} in-scope {inside:6.2f}%  out-of-scope recall {refused:6.2f}%"
                f"  (mean of {args.subsets} subsets)",
                flush=True,
            )
    cache.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
