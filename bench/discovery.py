"""How fast the LAN sees agents come and go: mDNS announce -> TD in a browser's view, and clean
shutdown -> removal, with 1, 10 and 100 agents announcing at once.

Real multicast between two network namespaces joined by a bridge (as tests/discovery do): the
agents run in one (tests/discovery/agent_host.py: an HTTP server per agent, all announced at
once), ``wot-agents discover --json --watch`` in the other. Times are wall-clock across the two
processes of this machine: from the moment the agents start announcing (their servers already
listening) to the browser printing each TD fetched and validated; from the start of a clean
shutdown to the browser printing each removal.

Targets (issue 4): p50 <= 1 s to discover, <= 1 s to see a removal, 100 agents all discovered
within 3 s. Needs root (ip netns); run: ``.venv/bin/python bench/discovery.py [--rounds N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sigterm import unwind_on_sigterm  # noqa: E402

from tests.discovery.conftest import agent_host, build_lan, destroy_lan, wot_agents  # noqa: E402


class Lines:
    """JSON lines of a child process, each stamped with the time it arrived.

    A reader task stamps every line the moment it is written, whether or not the bench is
    waiting for that process just then.
    """

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.queue: asyncio.Queue[tuple[float, dict[str, Any]] | None] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._read(proc))

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            with contextlib.suppress(ValueError):
                self.queue.put_nowait((time.time(), json.loads(line)))
        self.queue.put_nowait(None)

    async def next(self, within: float) -> tuple[float, dict[str, Any]]:
        async with asyncio.timeout(within):
            item = await self.queue.get()
        if item is None:
            raise EOFError("the process ended")
        return item


@contextlib.asynccontextmanager
async def running(argv: list[str]) -> AsyncIterator[Lines]:
    """A child process's stamped lines; the child is terminated and reaped on the way out."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = Lines(proc)
    try:
        yield lines
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        await lines.task


async def one_round(lan: Any, count: int, round_no: int) -> tuple[list[float], list[float]]:
    agents_ns, browser_ns = lan.hosts
    async with contextlib.AsyncExitStack() as stack:
        browser_lines = await stack.enter_async_context(
            running(browser_ns.command(*wot_agents("discover", "--json", "--watch")))
        )
        await asyncio.sleep(1.5)  # the browser is up and listening before the agents start
        agent_lines = await stack.enter_async_context(
            running(agents_ns.command(*agent_host("--title", f"Bench{round_no}", "--count", str(count))))
        )
        agents = agent_lines.proc
        _, announced = await agent_lines.next(within=60)
        names, started = set(announced["names"]), announced["started"]

        discovered: dict[str, float] = {}
        while len(discovered) < count:
            at, event = await browser_lines.next(within=30)
            if event["event"] == "added" and event["name"] in names:
                if not event["valid"]:
                    raise RuntimeError(f"{event['name']}: {event['error']}")
                discovered[event["name"]] = at - started

        assert agents.stdin is not None
        agents.stdin.write(b"stop\n")
        await agents.stdin.drain()
        _, stopping = await agent_lines.next(within=10)
        removed: dict[str, float] = {}
        while len(removed) < count:
            at, event = await browser_lines.next(within=30)
            if event["event"] == "removed" and event["name"] in names:
                removed[event["name"]] = at - stopping["t"]
        return list(discovered.values()), list(removed.values())


def summary(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (
        f"{label:<10} p50 {statistics.median(ordered) * 1000:7.0f} ms   p95 {p95 * 1000:7.0f} ms   "
        f"max {ordered[-1] * 1000:7.0f} ms   (n={len(ordered)})"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per agent count (default 5)")
    parser.add_argument("--counts", default="1,10,100")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    lan = build_lan(2)
    try:
        for count in (int(c) for c in args.counts.split(",")):
            found: list[float] = []
            gone: list[float] = []
            all_found: list[float] = []
            for round_no in range(args.rounds):
                discovered, removed = await one_round(lan, count, round_no)
                found += discovered
                gone += removed
                all_found.append(max(discovered))
            print(f"--- {count} agent(s) announcing at once, {args.rounds} rounds")
            print(summary("discover", found))
            print(summary("removal", gone))
            print(f"all {count} discovered within: worst round {max(all_found) * 1000:.0f} ms, "
                  f"median round {statistics.median(all_found) * 1000:.0f} ms")  # fmt: skip
    finally:
        destroy_lan(lan)


if __name__ == "__main__":
    unwind_on_sigterm()
    asyncio.run(main())
