"""The embedders side by side: single-query latency, agreement with the torch model, val accuracy.

    python bench/router_embedders.py [--queries 200]

Accuracy is the classifier rule on CLINC150 10-shot intents, VALIDATION split (this is where the
default embedder was chosen). Skips the accuracy part when ../shared/data/routing is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import router_datasets

from router import VectorRouter, evaluate, get_embedder, load_agents, load_queries

SENTENCES = ["will it rain tomorrow in Berlin?", "I want my money back for the broken blender", "play jazz"]


def latency(embedder, texts: list[str]) -> tuple[float, float]:
    embedder.embed(texts[:2])  # load
    times = []
    for text in texts:
        start = time.perf_counter()
        embedder.embed([text])
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--embedders", default="minilm,minilm-torch,wordllama")
    args = parser.parse_args()
    texts = SENTENCES * (args.queries // len(SENTENCES) + 1)
    files = None
    if router_datasets.DATA.is_dir():
        import tempfile

        files = router_datasets.write(Path(tempfile.mkdtemp(prefix="wot-agents-embedders-")))["clinc-intent"]
        texts = [q.text for q in load_queries(files["val"])]
    texts = texts[: args.queries]
    reference = get_embedder("minilm-torch").embed(texts[:100])
    for name in args.embedders.split(","):
        embedder = get_embedder(name)
        p50, p99 = latency(embedder, texts)
        line = f"{name:<13} ({embedder.name:<26}) one query p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
        if embedder.dim == reference.shape[1]:
            agreement = float((embedder.embed(texts[:100]) * reference).sum(axis=1).min())
            line += f"  min cosine to torch {agreement:.7f}"
        if files is not None:
            router = VectorRouter(embedder, threshold=0.0)
            await router.add(load_agents(files["agents"]))
            report = await evaluate(router, load_queries(files["val"]))
            line += f"  CLINC150 val acc {report.accuracy:.2%}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
