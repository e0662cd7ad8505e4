"""``wot-agents validate FILE...``: check descriptions against the TD 1.1 and Agent schemas."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "validate",
        help="validate Thing / Agent Description files",
        description="Validate each FILE ('-' reads standard input) against the W3C TD 1.1 JSON Schema, "
        "the WoT Discovery extension schema and the Agent Description schema. Exit code 0 when all "
        "are valid, 1 when any is not, 2 on a usage error.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("-q", "--quiet", action="store_true", help="print problems only, no 'valid' lines")
    parser.set_defaults(run=run)


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as file:
        return file.read()


def run(args: argparse.Namespace) -> int:
    from wot_agents import validate_json

    failed = False
    for path in args.files:
        try:
            data = _read(path)
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            failed = True
            continue
        problems = validate_json(data)
        for problem in problems:
            print(f"{path}: {problem.pointer or '/'}: {problem.message}")
        if problems:
            failed = True
        elif not args.quiet:
            print(f"{path}: valid")
    return 1 if failed else 0
