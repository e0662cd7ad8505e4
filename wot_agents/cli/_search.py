"""``wot-agents search``: query a Thing Description Directory by JSON filter, JSONPath or SPARQL.

The same three searches the directory's Search API offers, from a shell: ``tenant=acme`` style
fields (any of the JSON filter fields, ANDed), ``--jsonpath`` (RFC 9535) or ``--sparql`` (the
directory predeclares the td, hctl, wotsec, jsonschema, dct and lmos prefixes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_DIRECTORY = "http://127.0.0.1:8081"


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "search",
        help="search a Thing Description Directory (filter fields, JSONPath, SPARQL)",
        description="Search a W3C WoT Thing Description Directory. FIELD=VALUE conditions use the "
        "directory's JSON filter fields (id, type, capability, tenant, channel, subset, scheme, "
        "security, action, property, event, q, title), ANDed; a field given twice is any-of. "
        "Without a condition, lists every description.",
        epilog="examples: wot-agents search tenant=acme capability=forecast | "
        "wot-agents search --jsonpath '$[?@.title==\"Weather\"].id' | "
        "wot-agents search --sparql 'SELECT ?agent WHERE { ?agent a lmos:Agent }'",
    )
    parser.add_argument("fields", nargs="*", metavar="FIELD=VALUE", help="JSON filter conditions")
    parser.add_argument(
        "--directory",
        default=os.environ.get("WOT_AGENTS_DIRECTORY_URL", DEFAULT_DIRECTORY),
        metavar="URL",
        help=f"the directory (default $WOT_AGENTS_DIRECTORY_URL or {DEFAULT_DIRECTORY})",
    )
    parser.add_argument("--token", default=None, help="bearer token, for a directory that protects reads")
    query = parser.add_mutually_exclusive_group()
    query.add_argument("--filter", metavar="JSON", help='a full filter expression, e.g. {"or": [...]}')
    query.add_argument("--jsonpath", metavar="QUERY", help="an RFC 9535 JSONPath over the array of TDs")
    query.add_argument("--sparql", metavar="QUERY", help="a SPARQL query (or @FILE to read it from a file)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many descriptions (filter)")
    parser.add_argument("--json", action="store_true", help="print the directory's JSON answer")
    parser.add_argument(
        "--busy-timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long to keep asking a busy directory (503 with Retry-After, e.g. its SPARQL index"
        " catching up after a restart) before giving up (default 30)",
    )
    parser.set_defaults(run=run)


def _seconds(text: str) -> float:
    """A number of seconds, at least 0 (``nan`` or ``inf`` would make the command wait forever)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"seconds must be a finite number >= 0, not {text!r}")
    return value


def _conditions(pairs: list[str]) -> dict[str, str | list[str]]:
    fields: dict[str, str | list[str]] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name:
            raise ValueError(f"expected FIELD=VALUE, got {pair!r}")
        previous = fields.get(name)
        if previous is None:
            fields[name] = value
        else:
            fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
    return fields


def _summary(td: dict[str, Any]) -> str:
    capabilities = td.get("lmos:capabilities") or []
    names = [str(c.get("name") or c.get("id")) for c in capabilities if isinstance(c, dict)]
    line = f"{td.get('id', '(no id)')}  {td.get('title', '')}"
    return f"{line}  [{', '.join(names)}]" if names else line


def _print_sparql(result: Any) -> None:
    if isinstance(result, dict) and "boolean" in result:
        print("true" if result["boolean"] else "false")
        return
    if isinstance(result, dict) and "results" in result:
        variables = result.get("head", {}).get("vars", [])
        print("\t".join(f"?{v}" for v in variables))
        for row in result["results"].get("bindings", []):
            print("\t".join(str(row.get(v, {}).get("value", "")) for v in variables))
        return
    print(json.dumps(result, indent=2))


async def run(args: argparse.Namespace) -> int:
    from wot_agents import DirectoryClient, DirectoryError

    try:
        fields = _conditions(args.fields)
        expression = json.loads(args.filter) if args.filter else None
        sparql = args.sparql
        if sparql and sparql.startswith("@"):
            sparql = Path(sparql[1:]).read_text(encoding="utf-8")  # noqa: ASYNC240 (before any I/O)
    except (ValueError, OSError) as exc:  # json.JSONDecodeError is a ValueError
        print(f"wot-agents search: {exc}", file=sys.stderr)
        return 2
    if fields and (args.jsonpath or args.sparql):
        print(
            "wot-agents search: FIELD=VALUE goes with the JSON filter, not --jsonpath/--sparql",
            file=sys.stderr,
        )
        return 2
    try:
        async with DirectoryClient(
            args.directory, token=args.token, busy_timeout=args.busy_timeout
        ) as client:
            if args.jsonpath:
                print(json.dumps(await client.jsonpath(args.jsonpath), indent=2))
            elif sparql:
                result = await client.sparql(sparql)
                print(json.dumps(result, indent=2)) if args.json else _print_sparql(result)
            else:
                combined: dict[str, Any] | None = dict(fields) or None
                if expression is not None:
                    combined = {"and": [combined, expression]} if combined else expression
                found = await client.search(combined, limit=args.limit)
                if args.json:
                    print(json.dumps(found, indent=2))
                else:
                    for td in found:
                        print(_summary(td))
    except DirectoryError as exc:
        detail = exc.problem.get("detail") if exc.problem else None
        message = str(detail or exc)
        if exc.waited is not None:  # the directory's "busy" alone does not say that we waited
            reason = detail or exc.problem.get("title") or f"HTTP {exc.status}"
            message = (
                f"{reason} (the directory was still busy after {exc.waited:.1f} s of asking again;"
                f" --busy-timeout {args.busy_timeout:g} waits longer)"
            )
        print(f"wot-agents search: {message}", file=sys.stderr)
        return 1
    return 0
