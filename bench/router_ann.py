"""Index search at 100k examples: exact numpy vs the HNSW libraries, to pick the ANN backend.

    python bench/router_ann.py [--rows 100000] [--queries 500]

The vectors are 384-dimensional like MiniLM's, drawn around 1,000 "intent" centres so that
neighbours are meaningful, as they are for real example utterances. Prints build time, single-query
search latency (p50/p99, top-10) and recall@10 against the exact search. Target: <= 1 ms at 100k.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np

DIM = 384


def data(rows: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, DIM)).astype(np.float32)

    def around(n: int) -> np.ndarray:
        points = centres[rng.integers(0, len(centres), n)] + rng.normal(scale=0.6, size=(n, DIM)).astype(
            np.float32
        )
        return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)

    return around(rows), around(queries)


def timed(
    search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray
) -> tuple[list[float], list[np.ndarray]]:
    latencies, results = [], []
    for query in queries:
        start = time.perf_counter()
        results.append(search(query))
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    vectors, queries = data(args.rows, args.queries)
    k = args.k
    builders: dict[str, Callable[[], Callable[[np.ndarray], np.ndarray]]] = {}

    def exact() -> Callable[[np.ndarray], np.ndarray]:
        def search(query: np.ndarray) -> np.ndarray:
            sims = vectors @ query
            top = np.argpartition(-sims, k)[:k]
            return top[np.argsort(-sims[top])]

        return search

    builders["numpy exact"] = exact

    try:
        from usearch.index import Index

        def build_usearch() -> Callable[[np.ndarray], np.ndarray]:
            index = Index(
                ndim=DIM, metric="ip", dtype="f32", connectivity=16, expansion_add=128, expansion_search=64
            )
            index.add(np.arange(len(vectors)), vectors)
            return lambda query: np.asarray(index.search(query, k).keys)

        builders["usearch hnsw"] = build_usearch
    except ImportError:
        print("usearch not installed")
    try:
        import hnswlib

        def build_hnswlib() -> Callable[[np.ndarray], np.ndarray]:
            index = hnswlib.Index(space="ip", dim=DIM)
            index.init_index(max_elements=len(vectors), ef_construction=128, M=16)
            index.add_items(vectors, np.arange(len(vectors)))
            index.set_ef(64)
            return lambda query: index.knn_query(query, k)[0][0]

        builders["hnswlib"] = build_hnswlib
    except ImportError:
        print("hnswlib not installed")
    try:
        import faiss

        def build_faiss() -> Callable[[np.ndarray], np.ndarray]:
            index = faiss.IndexHNSWFlat(DIM, 16, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 128
            index.add(vectors)
            index.hnsw.efSearch = 64
            return lambda query: index.search(query[None, :], k)[1][0]

        builders["faiss hnsw"] = build_faiss
    except ImportError:
        print("faiss-cpu not installed")

    truth: list[np.ndarray] | None = None
    print(f"{args.rows} vectors x {DIM} dims, {args.queries} single queries, top-{k}")
    for name, build in builders.items():
        start = time.perf_counter()
        search = build()
        built = time.perf_counter() - start
        latencies, results = timed(search, queries)
        if truth is None:
            truth = results
        recall = np.mean(
            [len(set(r.tolist()) & set(t.tolist())) / k for r, t in zip(results, truth, strict=True)]
        )
        print(
            f"{name:<14} build {built:6.1f} s   search p50 {np.percentile(latencies, 50):.3f} ms"
            f"  p99 {np.percentile(latencies, 99):.3f} ms   recall@{k} {recall:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
