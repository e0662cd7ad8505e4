"""The ``wot-agents`` command.

Each subcommand lives in its own module ``wot_agents.cli._<name>`` with a ``register(subparsers)``
function; the services behind a command are imported inside it, so ``wot-agents validate`` does not
load aiohttp, zeroconf or torch.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import sys
from collections.abc import Sequence

from .._trace import TraceLogFilter

__all__ = ["main"]

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "serve",
    "validate",
    "directory",
    "search",
    "discover",
    "router",
    "route",
    "runtime",
    "ca",
    "group",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wot-agents",
        description="AI agents as W3C Web of Things Thing Descriptions: validate, serve, discover, route.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}._{name.replace('-', '_')}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s [trace %(trace_id)s]: %(message)s",
    )
    for handler in logging.getLogger().handlers:  # the W3C trace of the request being handled
        if not any(isinstance(f, TraceLogFilter) for f in handler.filters):
            handler.addFilter(TraceLogFilter())
    try:
        result = args.run(args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
    except KeyboardInterrupt:  # a finite command stopped midway; servers and watchers exit 0 (_signals)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
