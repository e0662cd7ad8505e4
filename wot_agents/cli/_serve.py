"""``wot-agents serve module:agent``: serve an SDK agent, the way ``uvicorn module:app`` serves an app.

The agent is looked up as ``module:attribute`` (the module imported with the current directory on
the path, as uvicorn does); the attribute is an :class:`~wot_agents.Agent`, or a function of no
arguments that returns one. SIGINT and SIGTERM (what Docker and Kubernetes send) stop it alike:
the mDNS goodbye is sent, the directory registration deleted and every binding closed.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from typing import Any

from ._signals import stop_on_signals


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="serve an agent declared with the SDK (module:agent)",
        description="Serve the Agent found at MODULE:ATTRIBUTE (an Agent, or a function returning one) "
        "over the bindings given by flags (default: --http 8080). Stops cleanly on Ctrl-C and "
        "SIGTERM: mDNS goodbye, directory deregistration, bindings closed.",
    )
    parser.add_argument("target", metavar="MODULE:ATTRIBUTE", help="where the agent is, e.g. server:agent")
    parser.add_argument(
        "--http", default=None, metavar="[HOST:]PORT", help="serve HTTP on this port (0: a free one)"
    )
    parser.add_argument(
        "--ws",
        nargs="?",
        const="same",
        default=None,
        metavar="[HOST:]PORT",
        help="serve the LMOS WebSocket binding (alone: on the HTTP port)",
    )
    parser.add_argument("--mqtt", default=None, metavar="URL", help="serve over MQTT through this broker")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--public-url", default=None, help="base URL written into the TD's forms")
    parser.add_argument("--announce", action="store_true", help="announce the agent by mDNS / DNS-SD")
    parser.add_argument(
        "--directory",
        default=None,
        metavar="URL",
        help="stay registered in this Thing Description Directory ('auto': the one found by DNS-SD)",
    )
    parser.add_argument("--directory-token", default=None, help="bearer token for the directory's writes")
    parser.add_argument("--ttl", type=float, default=60.0, help="registration ttl in seconds (renewed)")
    parser.add_argument(
        "--identity",
        default=None,
        metavar="KEYFILE",
        help="sign the TD with this key file (made on first run)",
    )
    parser.add_argument(
        "--tls",
        default=None,
        metavar="DIR:NAME",
        help="mutual TLS with NAME.crt/NAME.key/ca.crt from DIR (wot-agents ca): HTTPS/WSS, mqtts",
    )
    parser.set_defaults(run=run)


class TargetError(Exception):
    """MODULE:ATTRIBUTE does not name an agent."""


def load_agent(target: str) -> Any:
    """The agent at ``module:attribute``; raises :class:`TargetError` with what is wrong."""
    from wot_agents import Agent

    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise TargetError(f"expected MODULE:ATTRIBUTE (e.g. server:agent), got {target!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")  # the current directory, as `python -m` and uvicorn do
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.split(".")[0] and exc.name != module_name:
            raise  # the module exists, but something it imports does not: show the real traceback
        raise TargetError(f"no module named {module_name!r} (run from the folder that holds it)") from exc
    value: Any = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            names = sorted(n for n in vars(module) if isinstance(vars(module)[n], Agent))
            hint = f"; agents there: {', '.join(names)}" if names else ""
            raise TargetError(f"module {module_name!r} has no attribute {attribute!r}{hint}") from None
    if not isinstance(value, Agent) and callable(value) and _takes_no_arguments(value):
        value = value()  # a factory, as `uvicorn --factory` has it
    if not isinstance(value, Agent):
        raise TargetError(f"{target} is a {type(value).__name__}, not a wot_agents.Agent")
    return value


def _takes_no_arguments(function: Any) -> bool:
    try:
        inspect.signature(function).bind()
    except (TypeError, ValueError):
        return False
    return True


def _address(value: str) -> int | str:
    return int(value) if value.isdigit() else value


async def run(args: argparse.Namespace) -> int:
    from wot_agents import WotAgentsError

    try:
        agent = load_agent(args.target)
    except TargetError as exc:
        print(f"wot-agents serve: {exc}", file=sys.stderr)
        return 2
    http: int | str | None = _address(args.http) if args.http is not None else None
    ws: bool | int | str | None = None
    if args.ws == "same":
        ws = True
    elif args.ws is not None:
        ws = _address(args.ws)
    if http is None and ws is None and args.mqtt is None:
        http = 8080
    if ws is True and http is None:
        ws = 8080
    directory: str | bool | None = True if args.directory == "auto" else args.directory
    trust: dict[str, Any] = {}
    try:
        if args.identity:
            from wot_agents import AgentIdentity

            trust["identity"] = AgentIdentity.load_or_create(args.identity)
        if args.tls:
            from wot_agents.trust import TlsConfig

            folder, _, name = args.tls.rpartition(":")
            trust["tls"] = TlsConfig.from_dir(folder or ".", name)
    except (WotAgentsError, OSError) as exc:
        print(f"wot-agents serve: {exc}", file=sys.stderr)
        return 2
    serving = agent.serve(
        **trust,
        http=http,
        ws=ws,
        mqtt=args.mqtt,
        host=args.host,
        public_url=args.public_url,
        announce=args.announce,
        directory=directory,
        directory_token=args.directory_token,
        registration_ttl=args.ttl,
    )
    with stop_on_signals() as stop:
        try:
            async with serving as running:
                title = running.description.title
                for kind, url in running.base_urls.items():
                    print(f"{title}: {kind} {url}", flush=True)
                if running.td_url:
                    print(f"{title}: TD at {running.td_url}", flush=True)
                await stop.wait()
                print(f"{title}: stopping", flush=True)
        except (OSError, WotAgentsError) as exc:  # a port in use, a broker or directory not reachable
            print(f"wot-agents serve: {exc}", file=sys.stderr)
            return 1
    return 0
