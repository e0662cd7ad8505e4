"""``wot-agents group``: create, change, show and dissolve agent groups in a directory.

Every request is proved with the caller's key file (``--identity``, made on first use): the
owner creates, changes and dissolves; a member fetches its membership credential.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "group",
        help="manage agent groups in a directory",
        description="Agent groups in a WoT directory: an owner (the DID of --identity), members (DIDs) "
        "and a policy. Members get short-lived membership credentials that agents accept for "
        "group-only affordances.",
    )
    parser.add_argument("--directory", default="http://127.0.0.1:8081", help="the directory's URL")
    parser.add_argument(
        "--identity", default="agent.key", metavar="KEYFILE", help="your key file (default ./agent.key)"
    )
    parser.add_argument("--token", default=None, help="the directory's bearer token, if it protects reads")
    actions = parser.add_subparsers(dest="group_command", metavar="ACTION", required=True)
    for action, text in (("create", "create a group you own"), ("update", "replace the members")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("name")
        sub.add_argument("members", nargs="*", metavar="DID", help="the members' DIDs")
        sub.add_argument("--ttl", type=float, default=None, help="credential lifetime in s (1-60)")
    for action, text in (
        ("show", "print a group"),
        ("dissolve", "dissolve a group you own"),
        ("credential", "print a membership credential of yours"),
    ):
        actions.add_parser(action, help=text).add_argument("name")
    parser.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    import aiohttp

    from wot_agents import AgentIdentity, GroupClient, TrustError

    try:
        identity = AgentIdentity.load_or_create(args.identity)
        async with GroupClient(args.directory, identity, token=args.token) as groups:
            command = args.group_command
            if command in ("create", "update"):
                policy = {"credentialTtl": args.ttl} if args.ttl is not None else None
                result: Any = await groups.create(args.name, args.members, policy=policy)
            elif command == "show":
                result = await groups.get(args.name)
            elif command == "dissolve":
                await groups.dissolve(args.name)
                result = {"dissolved": args.name}
            else:
                credential, expires = await groups.credential(args.name)
                result = {"credential": credential, "expires": expires}
    except (TrustError, OSError, aiohttp.ClientError) as exc:
        print(f"wot-agents group {args.group_command}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0
