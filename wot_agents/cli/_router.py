"""``wot-agents router eval``: measure a routing method on labelled queries.

The router options are shared with ``wot-agents route`` (``add_router_options``/``build_router``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_router_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--agents",
        required=True,
        metavar="AGENTS.json|URL",
        help="a JSON array of Agent Descriptions, or the URL of a Thing Description Directory "
        "(every description registered there; a token from $WOT_AGENTS_DIRECTORY_TOKEN)",
    )
    parser.add_argument("--method", choices=("vector", "llm", "hybrid"), default="vector")
    parser.add_argument(
        "--embedder",
        default="minilm",
        metavar="NAME",
        help="minilm (default), e5, wordllama or openai; join several with '+' (minilm+e5: the most "
        "accurate, ~20 ms a query)",
    )
    parser.add_argument(
        "--cascade",
        metavar="NAME",
        help="a second, more accurate embedder that settles the decisions the --embedder router is "
        "unsure of (--embedder minilm --cascade minilm+e5: the join's accuracy at about MiniLM's "
        "typical latency); vector method only",
    )
    parser.add_argument(
        "--rule",
        default="classifier",
        choices=("classifier", "centroid", "nearest", "vote"),
        help="vector decision rule (vote = LMOS's top-5 vote)",
    )
    parser.add_argument("--threshold", type=float, help="abstain below this score (default: calibrated)")
    parser.add_argument(
        "--tune",
        action="store_true",
        help="fine-tune MiniLM (alone or as part of a joined --embedder) on the agents' examples first "
        "(minutes of CPU the first time; the tuned model is cached by the agents' texts, see 'router tune')",
    )
    parser.add_argument(
        "--tune-threads", type=int, default=1, metavar="N", help="CPU threads for tuning (default 1)"
    )
    parser.add_argument(
        "--out-of-scope",
        metavar="QUERIES.csv",
        help="queries no agent should take (the text column of a QUERIES.csv whose agent column is "
        "empty), taught to the classifier as a class of their own",
    )
    parser.add_argument("--hybrid-mode", choices=("fast", "requirements"), default="fast")
    parser.add_argument("--llm-model", help="chat model name (default $WOT_AGENTS_LLM_MODEL or gpt-4o-mini)")
    parser.add_argument("--llm-base-url", help="OpenAI-compatible endpoint (default $OPENAI_BASE_URL)")
    parser.add_argument(
        "--response-format",
        default="json_schema",
        choices=("json_schema", "json_object", "json_object+schema"),
        help="structured output style the endpoint supports (llama.cpp: json_object+schema)",
    )
    parser.add_argument("--tenant")
    parser.add_argument("--channel")
    parser.add_argument("--subset")
    parser.add_argument("--no-cache", action="store_true", help="do not keep description embeddings on disk")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


async def agents_from(source: str) -> list[Any]:
    """The agents of an AGENTS.json file, or every description registered in the directory at
    ``source`` when it is an http(s) URL (a directory error is a ``ValueError``: usage, exit 2)."""
    import os

    from router import load_agents
    from wot_agents import AgentDescription, DirectoryClient, DirectoryError

    if not source.startswith(("http://", "https://")):
        return load_agents(source)
    try:
        async with DirectoryClient(source, token=os.environ.get("WOT_AGENTS_DIRECTORY_TOKEN")) as directory:
            agents = [AgentDescription.from_dict(td) async for td in directory.list()]
    except DirectoryError as exc:
        raise ValueError(f"cannot read the agents of the directory at {source}: {exc}") from None
    if not agents:
        raise ValueError(f"the directory at {source} has no descriptions to route to")
    return agents


async def build_router(args: argparse.Namespace) -> tuple[Any, Any]:
    """The router the options ask for and a coroutine function teaching it the agents (and any
    out-of-scope examples) that returns once the router decides with all of it; errors here exit
    with status 2."""
    from router import (
        AgentFilter,
        EmbeddingCache,
        HybridRouter,
        LLMRouter,
        create_router,
        load_queries,
    )

    agents = await agents_from(args.agents)
    out_of_scope = []
    if args.out_of_scope:
        if args.method == "llm":
            raise ValueError(
                "--out-of-scope teaches the vector router; use it with --method vector or hybrid"
            )
        out_of_scope = [query.text for query in load_queries(args.out_of_scope) if query.agent is None]
        if not out_of_scope:
            raise ValueError(f"{args.out_of_scope} has no row with an empty agent column")
    embedder: Any = args.embedder
    cascade: Any = args.cascade
    if args.tune:
        embedder, cascade = await tuned_embedders(args, agents, [args.embedder, args.cascade])
    llm = {"model": args.llm_model, "base_url": args.llm_base_url, "response_format": args.response_format}
    router = create_router(
        args.method,
        embedder=embedder,
        rule=args.rule,
        threshold=args.threshold,
        cache=None if args.no_cache else EmbeddingCache(),
        where=AgentFilter(args.tenant, args.channel, args.subset),
        hybrid_mode=args.hybrid_mode,
        llm=llm,
        cascade=cascade,
    )

    async def teach() -> None:
        """Teach, then wait until the router has learnt it all: a decision never depends on
        whether a background refit happened to land first (the machine's load)."""
        await router.add(agents)
        if out_of_scope:
            learner = router.vector if isinstance(router, HybridRouter) else router
            assert not isinstance(learner, LLMRouter)  # --method llm was refused above
            await learner.set_out_of_scope(out_of_scope)
        await router.refitted()

    return router, teach


async def tuned_embedders(args: argparse.Namespace, agents: Any, specs: list[str | None]) -> list[Any]:
    """Each embedder spec (``None`` stays ``None``) with its MiniLM fine-tuned on the agents:
    trained once (cached) in a worker thread with progress on stderr, joined to the spec's other
    parts when it names several (``minilm+e5``)."""
    import asyncio

    from router import ConcatEmbedder, get_embedder, tune_minilm

    named = [spec.split("+") for spec in specs if spec is not None]
    if not all("minilm" in parts for parts in named):
        raise ValueError("--tune fine-tunes the minilm embedder; use minilm, alone or joined (minilm+e5)")
    tuned = await asyncio.to_thread(
        tune_minilm, agents, threads=args.tune_threads, log=lambda line: print(line, file=sys.stderr)
    )

    def joined(spec: str | None) -> Any:
        if spec is None:
            return None
        parts = spec.split("+")
        if len(parts) == 1:
            return tuned
        return ConcatEmbedder(*(tuned if part == "minilm" else get_embedder(part) for part in parts))

    return [joined(spec) for spec in specs]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "router", help="evaluate routing methods", description="Tools for the query router."
    )
    commands = parser.add_subparsers(dest="router_command", metavar="COMMAND", required=True)
    evaluate = commands.add_parser(
        "eval",
        help="accuracy and latency of a routing method on labelled queries",
        description="Route every query of QUERIES.csv (columns text,agent; an empty agent marks an "
        "out-of-scope query that should get no agent) among the agents of AGENTS.json and print "
        "accuracy, per-agent precision/recall, out-of-scope recall, latency p50/p99 and confusions.",
    )
    add_router_options(evaluate)
    evaluate.add_argument("--queries", required=True, metavar="QUERIES.csv")
    evaluate.add_argument(
        "--calibrate",
        metavar="VAL.csv",
        help="set the abstention threshold on the out-of-scope rows of this held-out file first",
    )
    evaluate.add_argument(
        "--oos-recall", type=float, default=0.85, help="out-of-scope recall to calibrate for"
    )
    evaluate.add_argument(
        "--gate",
        choices=("probability", "similarity"),
        default="probability",
        help="which abstention gate --calibrate sets alone: the best agent's score (default) or its "
        "closest example's similarity to the query (better for a --tune model)",
    )
    evaluate.add_argument("--limit", type=int, help="only the first N queries")
    evaluate.set_defaults(run=run_eval)
    tune = commands.add_parser(
        "tune",
        help="fine-tune MiniLM on the agents' example utterances (cached for --tune)",
        description="Contrastive fine-tuning of the MiniLM embedder on the example utterances of "
        "AGENTS.json (SetFit-style). Minutes of CPU; the ONNX model lands in "
        "~/.cache/wot-agents/tuned/, keyed by the agents' texts, where 'router eval --tune' and "
        "'route --tune' find it. Prints the model's path and how long training took.",
    )
    tune.add_argument("--agents", required=True, metavar="AGENTS.json|URL")
    tune.add_argument("--tune-threads", type=int, default=1, metavar="N", help="CPU threads (default 1)")
    tune.set_defaults(run=run_tune, embedder="minilm")


async def run_tune(args: argparse.Namespace) -> int:
    import time

    from wot_agents import WotAgentsError

    started = time.perf_counter()
    try:
        (embedder,) = await tuned_embedders(args, await agents_from(args.agents), [args.embedder])
    except (OSError, ValueError) as exc:
        print(f"wot-agents router tune: {exc}", file=sys.stderr)
        return 2
    except WotAgentsError as exc:
        print(f"wot-agents router tune: {exc}", file=sys.stderr)
        return 1
    print(f"model    {embedder.name}")
    print(f"path     {embedder.path}")
    print(f"seconds  {time.perf_counter() - started:.1f}")
    return 0


async def run_eval(args: argparse.Namespace) -> int:
    import asyncio

    from router import evaluate, load_queries
    from wot_agents import WotAgentsError

    try:
        router, teach = await build_router(args)
        queries = load_queries(args.queries)[: args.limit]
    except (OSError, ValueError, WotAgentsError) as exc:
        print(f"wot-agents router eval: {exc}", file=sys.stderr)
        return 2
    try:
        await teach()
        vectors = vector_routers(router)
        if args.calibrate:
            held_out = [q.text for q in load_queries(args.calibrate) if q.agent is None]
            for vector in vectors:
                await asyncio.to_thread(vector.calibrate_gate, held_out, args.oos_recall, args.gate)
        report = await evaluate(router, queries, method=args.method)
    except WotAgentsError as exc:
        print(f"wot-agents router eval: {exc}", file=sys.stderr)
        return 1
    finally:
        await router.aclose()
    if args.json:
        out = report.to_dict()
        settings = [gates_of(vector) for vector in vectors]
        out.update(
            settings[0]
            if settings
            else {"threshold": None, "similarity": None, "heldOutGates": None, "embedder": None}
        )
        if len(settings) > 1:
            out["cascade"] = settings[1]
        print(json.dumps(out, indent=2))
    else:
        print(report.format())
        for vector in vectors:
            if vector.threshold is not None:
                print(
                    f"threshold       {vector.threshold:.4f}"
                    f" ({vector.effective_rule()} on {vector.embedder.name})"
                )
            if vector.similarity is not None:
                print(f"similarity      {vector.similarity:.4f} (closest example, {vector.embedder.name})")
            held_out = gates_of(vector)["heldOutGates"]
            if held_out is not None:
                print(
                    f"similarity      set from the agents' held-out examples: {held_out['agents']}"
                    f" with examples, {held_out['describedOnly']} described only"
                    f" ({vector.embedder.name})"
                )
    return 0


def vector_routers(router: Any) -> list[Any]:
    """The vector routers inside ``router``: whose abstention gates ``--calibrate`` sets."""
    from router import CascadeRouter, HybridRouter, VectorRouter

    if isinstance(router, CascadeRouter):
        return list(router.routers)
    if isinstance(router, HybridRouter):
        return [router.vector]
    return [router] if isinstance(router, VectorRouter) else []


def gates_of(vector: Any) -> dict[str, Any]:
    """A vector router's abstention gates and embedder, as ``router eval --json`` reports them;
    ``heldOutGates``: the similarity gates it set from its agents (the range of the per-agent
    ones, and the one for agents without examples), ``None`` when a gate was given instead."""
    held_out = None
    if vector.gate_quantile is not None:
        per_agent, described_only = vector.held_out_gates()
        held_out = {
            "quantile": vector.gate_quantile,
            "agents": f"{min(per_agent.values()):.4f}-{max(per_agent.values()):.4f}" if per_agent else None,
            "describedOnly": None if described_only is None else round(described_only, 4),
        }
    return {
        "threshold": vector.threshold,
        "similarity": vector.similarity,
        "heldOutGates": held_out,
        "embedder": vector.embedder.name,
    }
