"""``wot-agents discover``: list the WoT agents announced on the LAN by mDNS / DNS-SD."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from ._signals import stop_on_signals, until_stopped

if TYPE_CHECKING:
    from discovery import DiscoveredAgent


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "discover",
        help="find agents announced on the LAN (mDNS / DNS-SD)",
        description="Browse _wot._tcp.local. for Things and directories, fetch each one's Thing "
        "Description from the announcing host and validate it. Without --watch, prints what was "
        "found after --timeout seconds; with --watch, prints each change as it happens.",
    )
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="seconds to browse (default 3; with --watch: forever)"
    )
    parser.add_argument("--json", action="store_true", help="JSON output (one object per line with --watch)")
    parser.add_argument("--watch", action="store_true", help="keep running and print added/updated/removed")
    parser.add_argument("--directories", action="store_true", help="only Thing Description Directories")
    parser.add_argument(
        "--bridge",
        nargs="?",
        const="dns-sd",
        metavar="URL",
        help="directory mode: register every agent found in the directory at URL (default: the one "
        "announced by DNS-SD), delete it when it leaves; runs until interrupted",
    )
    parser.add_argument("--token", help="bearer token for a directory that protects writes (--bridge)")
    parser.add_argument(
        "--interface",
        action="append",
        metavar="ADDR",
        help="browse only on the interface with this IP address (repeatable; default: all)",
    )
    parser.set_defaults(run=run)


async def run(args: argparse.Namespace) -> int:
    from discovery import Browser

    if args.bridge:
        with stop_on_signals() as stop:
            return await _bridge(args, stop)
    timeout = args.timeout if args.timeout is not None else (None if args.watch else 3.0)
    if args.watch:
        with stop_on_signals() as stop:
            async with Browser(directories_only=args.directories, interfaces=args.interface) as browser:

                async def watch() -> None:
                    async for event in browser:
                        _print(event.kind, event.agent, as_json=args.json)

                try:
                    async with asyncio.timeout(timeout):
                        await until_stopped(stop, watch())
                except TimeoutError:
                    pass
        return 0
    async with Browser(directories_only=args.directories, interfaces=args.interface) as browser:
        await asyncio.sleep(timeout or 0)
        agents = sorted(browser.agents.values(), key=lambda agent: agent.name)
    if args.json:
        print(json.dumps([_as_json(agent) for agent in agents], indent=2, ensure_ascii=False))
    elif not agents:
        print("no agents found", file=sys.stderr)
    for agent in [] if args.json else agents:
        _print(None, agent, as_json=False)
    return 0


async def _bridge(args: argparse.Namespace, stop: asyncio.Event) -> int:
    from discovery import DirectoryBridge, find_directory
    from wot_agents import DirectoryNotFound

    url = args.bridge
    if url == "dns-sd":
        try:
            url = await find_directory(within=args.timeout or 5.0, interfaces=args.interface)
        except DirectoryNotFound as exc:
            print(f"wot-agents discover: {exc}; give its URL: --bridge URL", file=sys.stderr)
            return 1
    async with DirectoryBridge(url, token=args.token, interfaces=args.interface):
        print(f"mirroring the agents announced on the LAN into {url}", flush=True)
        await stop.wait()
    return 0


def _print(event: str | None, agent: DiscoveredAgent, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"event": event, **_as_json(agent)}, ensure_ascii=False), flush=True)
        return
    service = agent.announcement
    where = agent.url or (service.td_urls() or [f"{service.scheme}://{service.server}:{service.port}"])[0]
    status = f"id={agent.description.id}" if agent.description else f"unusable: {agent.error}"
    prefix = f"{event:<8}" if event else ""
    print(f"{prefix}{service.instance}  [{service.kind}]  {where}  {status}", flush=True)


def _as_json(agent: DiscoveredAgent) -> dict[str, Any]:
    service = agent.announcement
    return {
        "name": service.name,
        "instance": service.instance,
        "type": service.kind,
        "scheme": service.scheme,
        "server": service.server,
        "port": service.port,
        "addresses": list(service.addresses),
        "td": service.td_path,
        "url": agent.url,
        "valid": agent.ok,
        "error": agent.error,
        "description": agent.description.to_dict() if agent.description else None,
    }
