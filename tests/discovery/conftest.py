"""Fixtures of the discovery tests: a LAN of network namespaces for real multicast, processes
running in them (the suite-wide leak guard of tests/conftest.py checks they leave nothing behind).

The LAN: one namespace per host, each with ``eth0`` (10.251.0.N/24 and fd00:77::N/64) plugged
into a bridge that lives in a namespace of its own. Names carry a random run id, so parallel runs
do not collide, and everything is deleted afterwards, whatever the test did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

AGENT_HOST = Path(__file__).with_name("agent_host.py")
SUBNET = "10.251.0"


@dataclass(frozen=True)
class Host:
    netns: str
    address: str
    address6: str

    def command(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass
class Lan:
    hosts: list[Host]
    namespaces: list[str] = field(default_factory=list)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


def build_lan(size: int) -> Lan:
    """``size`` hosts on one bridge; skips the test where namespaces cannot be made."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 'ip' is not installed (scripts/bootstrap.sh installs it)")
    run = secrets.token_hex(3)
    switch = f"wota-{run}-sw"
    lan = Lan(hosts=[])
    try:
        _ip("netns", "add", switch)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"network namespaces are not permitted here: {exc.stderr.strip()}")
    lan.namespaces.append(switch)
    try:
        _ip("-n", switch, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
        _ip("-n", switch, "link", "set", "br0", "up")
        for index in range(1, size + 1):
            netns = f"wota-{run}-h{index}"
            _ip("netns", "add", netns)
            lan.namespaces.append(netns)
            peer = ("peer", "name", f"p{index}", "netns", switch)
            _ip("link", "add", "eth0", "netns", netns, "type", "veth", *peer)
            _ip("-n", switch, "link", "set", f"p{index}", "master", "br0", "up")
            host = Host(netns, f"{SUBNET}.{index}", f"fd00:77::{index}")
            _ip("-n", netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", netns, "addr", "add", f"{host.address6}/64", "dev", "eth0", "nodad")
            _ip("-n", netns, "link", "set", "eth0", "up")
            _ip("-n", netns, "link", "set", "lo", "up")
            lan.hosts.append(host)
    except BaseException:
        destroy_lan(lan)
        raise
    return lan


def destroy_lan(lan: Lan) -> None:
    for netns in reversed(lan.namespaces):
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=20)


@pytest.fixture
def lan() -> Iterator[Lan]:
    """Two hosts: an agent's and a browser's."""
    built = build_lan(2)
    try:
        yield built
    finally:
        destroy_lan(built)


class Process:
    """A child process that speaks JSON lines on stdout (agent_host.py, ``discover --json``)."""

    def __init__(self, proc: asyncio.subprocess.Process, argv: list[str]) -> None:
        self.proc = proc
        self.argv = argv
        self.seen: list[dict[str, Any]] = []
        self.killed = False

    async def expect(self, match: Callable[[dict[str, Any]], bool], *, within: float) -> dict[str, Any]:
        """The first line (from now on) for which ``match`` is true; a line that is not a JSON
        object is matched as ``{"text": line}``."""
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(within):
                while line := await self.proc.stdout.readline():
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        obj = None
                    if not isinstance(obj, dict):
                        obj = {"text": line.decode(errors="replace").strip()}
                    self.seen.append(obj)
                    if match(obj):
                        return obj
        except TimeoutError:
            pass
        raise AssertionError(f"{self.argv[-6:]}: no matching line in {within} s; saw {self.seen}")

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def stop(self) -> str:
        """Interrupt (as Ctrl-C would), kill after 30 s; returns stderr for diagnostics.

        ``killed`` tells whether it had to be killed: a test of what a clean shutdown does (an
        mDNS goodbye, a deregistration) checks it. (Killed after 5 s, a loaded machine's agent
        sometimes never said goodbye, and the test waited for a "removed" that could not come.)
        """
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.killed = True
                # SIGABRT first: faulthandler (PYTHONFAULTHANDLER, set by spawn) prints where
                # every thread of a Python child was stuck; then it is gone for sure.
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signal.SIGABRT)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.proc.wait(), 5)
                if self.proc.returncode is None:
                    self.proc.kill()
                await self.proc.wait()
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode(errors="replace")


@pytest.fixture
async def spawn() -> AsyncIterator[Callable[..., Any]]:
    """Start processes (``await spawn(argv)``); all are stopped at the end of the test."""
    processes: list[Process] = []

    async def start(argv: list[str]) -> Process:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"},
        )
        processes.append(Process(proc, argv))
        return processes[-1]

    yield start
    for process in processes:
        await process.stop()


def agent_host(*args: str) -> list[str]:
    return [sys.executable, str(AGENT_HOST), *args]


def wot_agents(*args: str) -> list[str]:
    return [sys.executable, "-m", "wot_agents.cli", *args]
