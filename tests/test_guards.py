"""The suite's guards catch what they promise to: leaks, and callbacks that block the loop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.guards import BlockingMonitor, Snapshot
from tests.servers import eventually


@pytest.mark.allow_blocking("the guard's own test blocks on purpose")
async def test_a_callback_that_sleeps_is_caught_one_that_yields_is_not() -> None:
    monitor = BlockingMonitor(limit=0.1)
    monitor.install()
    try:

        async def blocks() -> None:
            time.sleep(0.25)  # noqa: ASYNC251 (the point of the test)

        async def yields() -> None:
            for _ in range(10):
                await asyncio.sleep(0.03)

        await asyncio.create_task(yields())
        assert monitor.take() == []
        await asyncio.create_task(blocks())
        caught = monitor.take()
    finally:
        monitor.uninstall()
    assert len(caught) == 1 and "blocks" in caught[0], caught


@pytest.mark.allow_blocking("the guard's own test computes on the loop on purpose")
async def test_a_callback_that_computes_too_long_is_caught() -> None:
    monitor = BlockingMonitor(limit=0.1)
    monitor.install()
    try:

        async def computes() -> None:
            end = time.thread_time() + 0.3  # CPU time: on a loaded machine this takes longer, not less
            while time.thread_time() < end:
                pass

        await asyncio.create_task(computes())
        caught = monitor.take()
    finally:
        monitor.uninstall()
    assert len(caught) == 1 and "computes" in caught[0], caught


async def test_leaks_are_listed() -> None:
    before = Snapshot.take()
    forgotten = asyncio.create_task(asyncio.Event().wait())
    listener = socket.socket()
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(30)")
    try:
        leaks = " ".join(before.leaks())
        assert "task" in leaks and "socket fd" in leaks and f"child process {child.pid}" in leaks
    finally:
        forgotten.cancel()
        listener.close()
        child.kill()
        await child.wait()
    await asyncio.gather(forgotten, return_exceptions=True)
    await eventually(lambda: before.leaks() == [], within=5)  # the child's watcher thread ends too


def test_the_monitor_keeps_no_file_open_for_an_ended_thread() -> None:
    monitor = BlockingMonitor(limit=0.1)
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    assert thread.native_id in monitor._others_wait()  # its run-queue figure is read from /proc
    release.set()
    thread.join()
    monitor._others_wait()
    assert thread.native_id not in monitor._thread_fds  # and its file closed once it ended


#: A run whose session fixture starts a real mosquitto (in its own session, as LocalBroker does),
#: then waits in a test until it is stopped.
_STOPPED_RUN = """
import os, time
from pathlib import Path

import pytest

from wot_agents.bindings.mqtt import LocalBroker


@pytest.fixture(scope="session")
def broker():
    with LocalBroker() as running:
        yield running


def test_waits(broker):
    Path(os.environ["BROKER_PID"]).write_text(str(broker._process.pid))
    time.sleep(120)
"""


async def test_sigterm_ends_the_run_with_its_session_fixtures(tmp_path: Path) -> None:
    """A SIGTERM'd run (a CI timeout) tears its fixtures down: its broker does not outlive it."""
    (tmp_path / "test_stopped.py").write_text(_STOPPED_RUN)
    pid_file = tmp_path / "broker.pid"
    env = {**os.environ, "PYTHONPATH": str(REPO), "BROKER_PID": str(pid_file)}
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(REPO / "pyproject.toml"),
        "-p", "tests.conftest",
        "--rootdir", str(tmp_path), str(tmp_path / "test_stopped.py"),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        await eventually(lambda: pid_file.exists() and pid_file.read_text() != "", within=60)
        broker = int(pid_file.read_text())
        run.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            output = (await run.communicate())[0].decode()
    finally:
        if run.returncode is None:
            run.kill()
            await run.wait()
    try:
        os.kill(broker, 0)
    except ProcessLookupError:
        pass  # stopped by the run's teardown
    else:
        os.kill(broker, signal.SIGKILL)
        pytest.fail(f"mosquitto {broker} outlived the SIGTERM'd run:\n{output}")
    assert run.returncode == pytest.ExitCode.INTERRUPTED, output
