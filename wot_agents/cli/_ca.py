"""``wot-agents ca``: a local certificate authority and agent certificates, for labs and tests.

``ca init`` makes ``ca.crt``/``ca.key`` in a directory; ``ca issue NAME`` makes ``NAME.crt``
and ``NAME.key`` signed by it, naming an agent's DID (from ``--did`` or its key file
``--identity``) so a server that verifies the certificate knows which agent calls. Keys are
written readable by their owner only.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "ca",
        help="a local CA issuing agent certificates (mutual TLS)",
        description="Create a local certificate authority and issue agent certificates whose subject "
        "names the agent's DID, for mutual TLS between agents, runtime, directory and an MQTT broker. "
        "For labs and tests: a production deployment uses its own PKI.",
    )
    actions = parser.add_subparsers(dest="ca_command", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="create the CA (ca.crt, ca.key) in --dir")
    init.add_argument("--dir", default="ca", help="where the CA lives (default ./ca)")
    init.add_argument("--name", default="wot-agents lab CA", help="the CA's common name")
    init.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    init.set_defaults(run=run_init)
    issue = actions.add_parser("issue", help="issue NAME.crt / NAME.key signed by the CA in --dir")
    issue.add_argument("name", metavar="NAME", help="file name of the certificate (e.g. the agent's slug)")
    issue.add_argument("--dir", default="ca", help="where the CA lives (default ./ca)")
    who = issue.add_mutually_exclusive_group()
    who.add_argument("--did", help="the DID the certificate names (URI subjectAltName)")
    who.add_argument(
        "--identity", metavar="KEYFILE", help="an agent key file: the certificate names its did:key"
    )
    issue.add_argument(
        "--host",
        action="append",
        dest="hosts",
        metavar="HOST",
        help="a DNS name or address it may serve under (repeat; default localhost, 127.0.0.1, ::1)",
    )
    issue.add_argument("--days", type=float, default=365, help="validity in days (default 365)")
    issue.set_defaults(run=run_issue)


def run_init(args: argparse.Namespace) -> int:
    from wot_agents import TrustError
    from wot_agents.trust import LocalCA

    try:
        ca = LocalCA.create(args.dir, name=args.name, days=args.days)
    except (TrustError, OSError) as exc:
        print(f"wot-agents ca init: {exc}", file=sys.stderr)
        return 1
    print(f"CA created: {ca.directory / 'ca.crt'} (key {ca.directory / 'ca.key'}, mode 600)")
    return 0


def run_issue(args: argparse.Namespace) -> int:
    from wot_agents import AgentIdentity, TrustError
    from wot_agents.trust import LocalCA

    try:
        ca = LocalCA.load(args.dir)
        did = args.did
        if args.identity:
            did = AgentIdentity.load_or_create(args.identity).did
        if did is not None and not did.startswith("did:"):
            raise TrustError(f"--did must be a DID (did:key:..., did:web:...), not {did!r}")
        hosts = args.hosts or ("localhost", "127.0.0.1", "::1")
        config = ca.issue(args.name, did=did, hosts=hosts, days=args.days)
    except (TrustError, OSError, ValueError) as exc:
        print(f"wot-agents ca issue: {exc}", file=sys.stderr)
        return 1
    named = f" naming {did}" if did else ""
    print(f"certificate issued: {config.cert} (key {config.key}, mode 600){named}")
    return 0
