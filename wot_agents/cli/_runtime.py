"""``wot-agents runtime``: the LMOS-compatible chat endpoint that routes each turn to an agent."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._signals import stop_on_signals


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "runtime",
        help="run the chat runtime (LMOS API)",
        description="Serve the LMOS runtime API (POST /apis/v1/{tenant}/chat/{conversation}/message, also "
        "under /lmos/runtime/apis/v1): each turn goes to the chat agent that fits it among those serving "
        "the tenant and channel. Candidates come from --directory (kept current by its events), from "
        "--agents files, or else from mDNS. Settings also come from WOT_AGENTS_RUNTIME_* variables and "
        "LMOS's own (AGENT_REGISTRY_URL, OPENAI_API_URL, OPENAI_API_MODEL, OPENAI_API_KEY, ROUTER_TYPE).",
    )
    parser.add_argument("--directory", metavar="URL", help="Thing Description Directory of the agents")
    parser.add_argument("--directory-token", metavar="TOKEN", help="bearer token for the directory")
    parser.add_argument(
        "--agents", nargs="+", metavar="FILE", help="Agent Description files (a TD or a JSON array each)"
    )
    parser.add_argument(
        "--channels", nargs="+", metavar="FILE", help="LMOS Channel / ChannelRollout YAML files"
    )
    parser.add_argument(
        "--router",
        choices=("vector", "llm", "hybrid", "cascade", "explicit"),
        help="how turns naming no explicitAgent are routed (default vector)",
    )
    parser.add_argument(
        "--embedder", help="embedder of the vector router (default minilm-int8; fp32: minilm)"
    )
    parser.add_argument("--llm-base-url", help="OpenAI-compatible endpoint of the LLM router")
    parser.add_argument("--llm-model", help="chat model of the LLM router")
    store = parser.add_mutually_exclusive_group()
    store.add_argument(
        "--store", metavar="PATH", help="SQLite file of the conversations (default ./wot-runtime.db)"
    )
    store.add_argument("--memory", action="store_true", help="keep conversations in memory (lost on exit)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8080; 0 picks a free one)")
    parser.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from runtime import RuntimeSettings, create_app
    from wot_agents import WotAgentsError, serve_app

    keys = ("directory", "directory_token", "agents", "channels", "router", "embedder", "llm_base_url")
    overrides: dict[str, Any] = {key: getattr(args, key) for key in (*keys, "llm_model", "host", "port")}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if not args.memory:
        overrides["store"] = args.store or os.environ.get("WOT_AGENTS_RUNTIME_STORE") or "wot-runtime.db"
    try:
        settings = RuntimeSettings(**overrides)
    except ValidationError as exc:
        print(f"wot-agents runtime: {exc}", file=sys.stderr)
        return 2
    # Routing runs on the loop's default executor: room for many concurrent turns there lets the
    # micro-batched embedder (runtime/_batch.py) gather them into batches.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=32, thread_name_prefix="wot-runtime")
    )
    with stop_on_signals() as stop:  # from here on a signal stops the runtime cleanly
        try:
            async with serve_app(
                create_app(settings), settings.host, settings.port, shutdown_timeout=settings.agent_timeout
            ) as url:
                print(f"runtime listening on {url}/apis/v1/", flush=True)
                await stop.wait()
                print("runtime stopping", flush=True)
        except (OSError, ValueError, WotAgentsError) as exc:
            print(f"wot-agents runtime: {exc}", file=sys.stderr)
            return 2
    return 0
