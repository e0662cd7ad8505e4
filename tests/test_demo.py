"""The README's demo (``make demo``) through the real system: directory, broker, agents, runtime."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

DEMO = [sys.executable, str(REPO / "examples" / "demo.py"), "--port", "0", "--runtime-port", "0"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def test_demo_asks_each_sample_through_the_runtime_and_its_agent_answers_over_its_binding() -> None:
    result = subprocess.run(
        [*DEMO, "--once", "--memory"], capture_output=True, text=True, timeout=300, check=False, env=ENV
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"explorer +http://127\.0\.0\.1:\d+/explorer\n", out)
    assert re.search(r"chat +http://127\.0\.0\.1:\d+/chat\?tenant=acme&channel=web\n", out)
    assert "the rollout sends" in out and "to canary" in out
    assert "-> Weather (score" in out and "subset stable, over http): Expect light rain" in out
    assert "-> Billing (score" in out and "over ws): Your bill is 42.50 EUR" in out
    assert "-> Translator (score" in out and "over mqtt): In German: 'Danke schön'" in out
    assert re.search(r"What is the capital of Australia\?.*\n    -> no agent fits \(AGENT_NOT_FOUND\)", out)
    # The canary: a conversation the 90/10 rollout gives to the canary channel reaches Weather 2.0.
    assert "-> WeatherBeta (score" in out and "subset canary, over http): [2.0 canary]" in out
    assert "Traceback" not in result.stderr


def _children(pid: int) -> set[int]:
    """Every process descending from ``pid`` (mosquitto, the directory's index process...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [*DEMO, "--db", str(tmp_path / "directory.db"), "--store", str(tmp_path / "runtime.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=ENV,
    )
    try:
        assert demo.stdout is not None
        out = ""
        deadline = time.monotonic() + 240
        while "Serving until Ctrl-C." not in out:
            line = demo.stdout.readline()
            assert line and time.monotonic() < deadline, out + (demo.stderr.read() if demo.stderr else "")
            out += line
        children = _children(demo.pid)
        ports = {int(port) for port in re.findall(r"127\.0\.0\.1:(\d+)", out)}
        assert len(ports) >= 6 and children  # directory, broker, four agents (WS, MQTT...), runtime
        assert all(_listening(port) for port in ports)
        demo.send_signal(signal.SIGINT)
        rest, errors = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 0, errors[-3000:]
    assert "Stopped: the agents, the broker, the runtime and the directory are down." in rest
    assert errors.strip() == "", errors[-3000:]  # a clean Ctrl-C prints no error
    # Helpers that end when they see the demo gone (multiprocessing's forkserver and resource
    # tracker read EOF on its pipes) take a moment: wait for them, as long as 10 s.
    deadline = time.monotonic() + 10
    while (left := [pid for pid in children if _alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, {pid: _command(pid) for pid in left}
    assert not [port for port in ports if _listening(port)]
    assert (tmp_path / "directory.db").exists() and (tmp_path / "runtime.db").exists()


def test_a_question_typed_in_a_terminal_then_ctrl_c(tmp_path: Path) -> None:
    """As a person runs it: in a terminal (a pty), a typed question, then Ctrl-C from the keyboard,
    which the terminal sends to the whole foreground process group, not just the demo."""
    master, slave = os.openpty()
    demo = subprocess.Popen(
        ["setsid", "--ctty", *DEMO, "--memory"],  # its own session, with the pty as its terminal
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=ENV,
        close_fds=True,
    )
    os.close(slave)
    seen = b""

    def read_until(token: bytes, within: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + within
        while token not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")[-3000:]
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:  # the demo closed the terminal
                    break

    try:
        read_until(b"you> ", 240)
        os.write(master, b"how much do I owe?\n")
        read_until(b"owe?\r\n    -> Billing (score", 60)
        read_until(b"France.\r\n\r\nyou> ", 30)
        os.write(master, b"\x03")  # Ctrl-C on the keyboard
        read_until(b"Stopped: the agents, the broker, the runtime and the directory are down.", 60)
        assert demo.wait(timeout=60) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        os.close(master)
    tail = seen.split(b"you> ^C", 1)[-1].decode(errors="replace")
    assert "Traceback" not in tail and "Error" not in tail and "exception" not in tail, tail
