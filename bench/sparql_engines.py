"""Why Oxigraph: the same RDF of N agent descriptions in rdflib and in pyoxigraph.

Prints load time, selective SELECT latency (p50) and the Python heap growth of each engine.
Usage: ``python bench/sparql_engines.py [N]`` (default 1000).
"""

from __future__ import annotations

import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import pyoxigraph as ox
import rdflib

sys.path.insert(0, str(Path(__file__).parent))
from directory import agent

from registry._rdf_worker import Indexer

TD = "https://www.w3.org/2019/wot/td#"


def selective_p50(run: Callable[[str], Iterable[object]], queries: list[str]) -> float:
    """Median milliseconds of ``run`` over the queries, each of which must find exactly one row."""
    times = []
    for q in queries:
        t = time.perf_counter()
        rows = list(run(q))
        times.append((time.perf_counter() - t) * 1000)
        assert len(rows) == 1
    return statistics.median(times)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    templates = Indexer(ox.Store()).templates
    docs = {f"urn:bench:agent:{i:07}": agent(i) for i in range(n)}
    t = time.perf_counter()
    nquads = "".join(templates.nquads(td, thing_id, f"x{k}") for k, (thing_id, td) in enumerate(docs.items()))
    convert = time.perf_counter() - t
    print(f"{n} agent descriptions, {nquads.count(chr(10))} quads; JSON-LD -> N-Quads {convert:.2f} s")
    queries = [f'SELECT ?t WHERE {{ ?t <{TD}title> "Agent {(i * 7919) % n}"@en }}' for i in range(50)]

    tracemalloc.start()
    t = time.perf_counter()
    store = ox.Store()
    store.load(nquads, format=ox.RdfFormat.N_QUADS)
    load = time.perf_counter() - t
    p50 = selective_p50(partial(store.query, use_default_graph_as_union=True), queries)
    heap = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    print(f"pyoxigraph: load {load:6.2f} s, selective SELECT p50 {p50:7.2f} ms, "
          f"Python heap {heap:5.0f} MB (its store is native memory)")  # fmt: skip
    del store

    tracemalloc.start()
    t = time.perf_counter()
    dataset = rdflib.Dataset(default_union=True)
    dataset.parse(data=nquads, format="nquads")
    load = time.perf_counter() - t
    p50 = selective_p50(dataset.query, queries[:10])
    heap = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    print(f"rdflib:     load {load:6.2f} s, selective SELECT p50 {p50:7.2f} ms, "
          f"Python heap {heap:5.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
