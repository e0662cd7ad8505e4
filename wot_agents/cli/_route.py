"""``wot-agents route --agents AGENTS.json "query"``: print which agent would handle a query."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._router import add_router_options, build_router


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "route",
        help="choose the agent for a query",
        description="Route QUERY among the agents of AGENTS.json and print the decision: the agent "
        "(or none), its score, the reason and which method decided. Exit code 0 when an agent was "
        "chosen, 3 when the router abstained, 1 when routing failed, 2 on a usage error.",
    )
    add_router_options(parser)
    parser.add_argument("query")
    parser.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    from wot_agents import WotAgentsError

    try:
        router, teach = await build_router(args)
    except (OSError, ValueError, WotAgentsError) as exc:
        print(f"wot-agents route: {exc}", file=sys.stderr)
        return 2
    try:
        await teach()
        decision = await router.route(args.query)
    except WotAgentsError as exc:
        print(f"wot-agents route: {exc}", file=sys.stderr)
        return 1
    finally:
        await router.aclose()
    if args.json:
        print(json.dumps(decision.to_dict(), indent=2))
    else:
        print(f"agent   {decision.agent_id or '(none: abstained)'}")
        print(f"score   {decision.score:.4f}")
        print(f"method  {decision.method}")
        print(f"reason  {decision.reason}")
    return 0 if decision.agent_id else 3
