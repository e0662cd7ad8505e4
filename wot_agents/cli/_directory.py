"""``wot-agents directory``: run the W3C WoT Thing Description Directory."""

from __future__ import annotations

import argparse
import sys
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

from wot_agents import WotAgentsError

from .._app_server import serve_app, url_host
from ._signals import stop_on_signals


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "directory",
        help="run the WoT Thing Description Directory",
        description="Serve a W3C WoT Discovery Thing Description Directory (Things, Events and Search "
        "APIs). Descriptions are kept in an SQLite file (default ./wot-directory.db) unless --memory. "
        "Settings also come from WOT_AGENTS_DIRECTORY_* environment variables.",
    )
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default 8081; 0 picks a free one)")
    store = parser.add_mutually_exclusive_group()
    store.add_argument(
        "--db", default=None, metavar="PATH", help="SQLite database file (default wot-directory.db)"
    )
    store.add_argument("--memory", action="store_true", help="keep everything in memory (lost on exit)")
    parser.add_argument(
        "--backend",
        choices=("embedded", "kubernetes"),
        default="embedded",
        help="embedded: SQLite (--db) or memory (--memory); kubernetes: ThingDescription objects in the "
        "cluster (kubectl apply -k deploy/base first), so several replicas serve the same descriptions",
    )
    kube = parser.add_argument_group("kubernetes")
    kube.add_argument(
        "--namespace", default=None, help="namespace of the descriptions (default: the context's)"
    )
    kube.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, in-cluster)")
    kube.add_argument(
        "--watch-services",
        action="store_true",
        help="mirror agent Services (label wot-agents.io/agent=true or lmos-agent=true) into the directory",
    )
    kube.add_argument(
        "--lmos-channels",
        action="store_true",
        help="resolve LMOS Channel resources against the agents; write ChannelRoutings and Channel status",
    )
    parser.add_argument("--token", default=None, help="require 'Authorization: Bearer TOKEN' for writes")
    parser.add_argument(
        "--protect-reads",
        action="store_true",
        help="with --token, reads need the token too (only the directory's own TD stays open)",
    )
    parser.add_argument(
        "--require-signatures",
        action="store_true",
        help="refuse unsigned Thing Descriptions (signed ones are always verified)",
    )
    parser.add_argument(
        "--trusted-issuer",
        action="append",
        dest="trusted_issuers",
        metavar="DID",
        help="accept only descriptions signed by this DID (repeat for several)",
    )
    parser.add_argument(
        "--announce",
        action="store_true",
        help="announce the directory by mDNS / DNS-SD (_directory._sub._wot._tcp), so agents and "
        "clients on the LAN find it without a URL",
    )
    parser.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    import logging

    from registry import DirectorySettings, create_app

    keys = ("host", "port", "token", "protect_reads", "require_signatures", "trusted_issuers")
    overrides: dict[str, Any] = {k: getattr(args, k) for k in keys if getattr(args, k)}
    if args.port == 0:
        overrides["port"] = 0
    try:
        settings = DirectorySettings(**overrides)
    except ValueError as exc:  # pydantic's ValidationError: e.g. --protect-reads without a token
        print(f"wot-agents directory: {exc}", file=sys.stderr)
        return 2
    if args.memory:
        settings.db = None
    elif args.db is not None or settings.db is None:
        settings.db = args.db or "wot-directory.db"  # type: ignore[assignment]
    if args.backend == "kubernetes" and (args.db is not None or args.memory):
        print("wot-agents directory: --db and --memory are for --backend embedded", file=sys.stderr)
        return 2
    logging.getLogger("aiohttp.access").setLevel(logging.INFO)  # one line per request, whatever -v says
    async with AsyncExitStack() as stack:
        # First in, last out: a signal at any point from here on stops the directory cleanly.
        stop = stack.enter_context(stop_on_signals())
        try:
            kube, namespace, store = await _kubernetes(args, stack)
            app = create_app(settings, store=store)
            serving = serve_app(
                app,
                settings.host,
                settings.port,
                access_log=True,
                access_log_format='%a "%r" %s %b %Tfs',
                read_timeout=settings.read_timeout,
                max_connections=settings.max_connections,
            )
            url = await stack.enter_async_context(serving)
        except WotAgentsError as exc:  # no Kubernetes configuration, no CRD, API server unreachable
            print(f"wot-agents directory: {exc}", file=sys.stderr)
            return 1
        stored = f"kubernetes, namespace {namespace}" if store is not None else settings.db or "memory"
        print(f"directory listening on {url}/ (store: {stored})", flush=True)
        if kube is not None and (args.watch_services or args.lmos_channels):
            from registry import DIRECTORY, ClusterDuties

            port = urlsplit(url).port or settings.port
            host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else url_host(settings.host)
            duties = ClusterDuties(
                kube,
                app[DIRECTORY],
                f"http://{host}:{port}",
                namespace=namespace,
                services=args.watch_services,
                channels=args.lmos_channels,
                token=settings.token,
            )
            # Closed before the directory: mirrored Services are deregistered while it answers.
            await stack.enter_async_context(duties)
        if args.announce:
            from discovery import Announcer

            # Browsers fetch the directory's TD from /.well-known/wot; the announcement itself
            # needs only its title and @type.
            own = {"title": "wot-agents directory", "@type": "ThingDirectory"}
            port = urlsplit(url).port or settings.port
            announcer = Announcer(own, port=port, td_path="/.well-known/wot", listen_host=settings.host)
            await announcer.start()
            # Closed first (goodbye packets) while the directory still answers.
            stack.push_async_callback(announcer.aclose)
            print(f"directory announced as {announcer.name}", flush=True)
        await stop.wait()
        print("directory stopping", flush=True)
    return 0


async def _kubernetes(args: argparse.Namespace, stack: AsyncExitStack) -> tuple[Any, str, Any]:
    """The Kubernetes client, namespace and store the options ask for (None where they ask none)."""
    if args.backend != "kubernetes" and not (args.watch_services or args.lmos_channels):
        return None, "", None
    from registry import KubernetesStore
    from wot_agents import KubeClient

    kube = await KubeClient.connect(kubeconfig=args.kubeconfig)
    stack.push_async_callback(kube.aclose)
    namespace = args.namespace or kube.default_namespace
    store = KubernetesStore(namespace=namespace, client=kube) if args.backend == "kubernetes" else None
    return kube, namespace, store
