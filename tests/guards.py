"""Suite-wide guards (installed by tests/conftest.py): nothing leaks, nothing blocks the loop.

**Leaks.** After each test, every task it started must be done, every thread it started ended,
every socket it opened closed and every child process it started gone (reaped or not, a child
still running is a leak; a zombie is one nobody waited for). Closing takes a few loop turns, so
the check polls for a while before it fails.

**A blocked loop.** Every callback the event loop runs (a task step, a timer, an I/O callback)
is timed: a callback that holds the loop for more than ``BLOCKED`` seconds fails the test that
was running. The time counted is the wall time the callback took *minus* the time its thread
spent waiting for a CPU (the kernel's run-queue delay, ``/proc/thread-self/schedstat``), minus
garbage collection and minus waiting for a new thread or process to start (an executor growing,
asyncio's synchronous fork and exec of a subprocess: that is the newcomer's scheduling delay).
So a loaded 2-core machine does not make a short callback look long, while a callback that
sleeps, waits on a socket or computes for too long is caught whatever the load. A test that
knowingly blocks (e.g. loading a model inside the loop at startup) says so with
``@pytest.mark.allow_blocking("why")``. A watchdog thread samples the loop thread's stack once a
callback has run past the limit, so the report says *where* it was, not only which task.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import gc
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["BLOCKED", "BlockingMonitor", "Snapshot", "children", "socket_fds"]

#: How long one callback may hold the event loop (seconds).
BLOCKED = 0.1


def socket_fds() -> set[str]:
    """The file descriptors of this process that are sockets."""
    found: set[str] = set()
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                found.add(fd)
        except OSError:
            continue
    return found


#: Children that live as long as the test process by design: multiprocessing's fork server (the
#: directory's SPARQL index starts its workers from it) and its resource tracker.
_LIFELONG_CHILDREN = ("multiprocessing.forkserver", "multiprocessing.resource_tracker")
#: Threads a library starts once and keeps for the process: tqdm's progress-bar monitor.
_LIFELONG_THREADS = ("tqdm_monitor",)


def _lifelong(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read().decode(errors="replace")
    except OSError:
        return False
    return any(name in command for name in _LIFELONG_CHILDREN)


def children() -> set[tuple[int, str]]:
    """This process's child processes as (pid, command); zombies included (nobody waited).

    The lifelong helpers of multiprocessing are left out."""
    me = os.getpid()
    found: set[tuple[int, str]] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as stat:
                text = stat.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'.
        command = text[text.find("(") + 1 : text.rfind(")")]
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == me and not _lifelong(entry):
            found.add((int(entry), command + (" (zombie)" if fields[0] == "Z" else "")))
    return found


def _tolerated(thread: threading.Thread) -> bool:
    # The loop's default executor (SQLite runs there) is shut down with the loop, after the test.
    return thread.name.startswith("asyncio_") or thread.name in _LIFELONG_THREADS


@dataclass
class Snapshot:
    """What was running before a test: only what appears after it counts as the test's."""

    tasks: set[asyncio.Task[Any]]
    threads: set[threading.Thread]
    sockets: set[str]
    processes: set[tuple[int, str]]

    @classmethod
    def take(cls) -> Snapshot:
        try:
            tasks = asyncio.all_tasks()
        except RuntimeError:  # no running loop: a sync test
            tasks = set()
        return cls(tasks, set(threading.enumerate()), socket_fds(), children())

    def leaks(self, *, processes: bool = True) -> list[str]:
        """What the test left behind, described; empty when nothing (child processes only if asked)."""
        found: list[str] = []
        try:
            tasks = asyncio.all_tasks() - self.tasks - {asyncio.current_task()}
        except RuntimeError:
            tasks = set()
        found += [f"task {task.get_coro()!r}" for task in tasks if not task.done()]
        threads = set(threading.enumerate()) - self.threads
        found += [f"thread {t.name!r}" for t in threads if t.is_alive() and not _tolerated(t)]
        found += [f"socket fd {fd}" for fd in sorted(socket_fds() - self.sockets)]
        if processes:
            found += [
                f"child process {pid} {command!r}" for pid, command in sorted(children() - self.processes)
            ]
        return found


class BlockingMonitor:
    """Times every callback of every event loop (``Handle._run``) and remembers the slow ones."""

    def __init__(self, limit: float = BLOCKED) -> None:
        self.limit = limit
        self.offenders: list[str] = []
        self._local = threading.local()
        self._gc_time = 0.0
        self._gc_started = 0.0
        self._original: Callable[[asyncio.events.Handle], None] | None = None
        self._original_start: Callable[[threading.Thread], None] | None = None
        self._original_spawn: Callable[..., None] | None = None
        self._running: dict[int, float] = {}  # thread id -> when its current callback started
        self._samples: dict[int, tuple[float, str]] = {}  # thread id -> (start, where it was past the limit)
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    def install(self) -> None:
        if self._original is not None:
            return
        original = asyncio.events.Handle._run
        monitor = self

        def _run(handle: asyncio.events.Handle) -> None:
            start, waited = time.perf_counter(), monitor._run_queue_wait()
            excused = monitor._gc_time + monitor._starting()
            me = threading.get_ident()
            monitor._samples.pop(me, None)
            monitor._running[me] = start
            try:
                original(handle)
            finally:
                elapsed = time.perf_counter() - start
                del monitor._running[me]
                began, where = monitor._samples.pop(me, (start, ""))
                where = where if began == start else ""
                if elapsed > monitor.limit:
                    monitor._judge(handle, elapsed, waited, excused, where)

        original_start = threading.Thread.start

        def start(thread: threading.Thread) -> None:
            began = time.perf_counter()
            try:
                original_start(thread)
            finally:
                monitor._local.starting = monitor._starting() + time.perf_counter() - began

        original_spawn = subprocess.Popen._execute_child  # type: ignore[attr-defined]

        def spawn(popen: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
            began = time.perf_counter()
            try:
                original_spawn(popen, *args, **kwargs)
            finally:
                monitor._local.starting = monitor._starting() + time.perf_counter() - began

        self._original, self._original_start, self._original_spawn = original, original_start, original_spawn
        asyncio.events.Handle._run = _run  # type: ignore[method-assign]
        threading.Thread.start = start  # type: ignore[method-assign]
        subprocess.Popen._execute_child = spawn  # type: ignore[attr-defined]
        gc.callbacks.append(self._gc)
        self._stop.clear()
        self._watchdog = threading.Thread(target=self._watch, name="blocking-guard-watchdog", daemon=True)
        original_start(self._watchdog)

    def uninstall(self) -> None:
        if self._watchdog is not None:
            self._stop.set()
            self._watchdog.join()
            self._watchdog = None
        if self._original is not None and self._original_start is not None:
            asyncio.events.Handle._run = self._original  # type: ignore[method-assign]
            threading.Thread.start = self._original_start  # type: ignore[method-assign]
            subprocess.Popen._execute_child = self._original_spawn  # type: ignore[attr-defined]
            self._original = self._original_start = self._original_spawn = None
            gc.callbacks.remove(self._gc)

    def take(self) -> list[str]:
        offenders, self.offenders = self.offenders, []
        return offenders

    def _judge(
        self, handle: asyncio.events.Handle, elapsed: float, waited: float, excused: float, where: str
    ) -> None:
        """Count only the time the loop's thread was not merely waiting for a CPU, the collector or
        a new thread to start."""
        excused = self._gc_time + self._starting() - excused
        blocked = elapsed - (self._run_queue_wait() - waited) - excused
        if blocked > self.limit:
            sampled = f" (past {self.limit} s it was in: {where})" if where else ""
            self.offenders.append(
                f"{_describe(handle)} held the loop for {blocked:.3f} s of {elapsed:.3f} s{sampled}"
            )

    def _watch(self) -> None:
        """Sample the stack of every loop thread whose callback has run past the limit, once."""
        while not self._stop.wait(self.limit / 4):
            now = time.perf_counter()
            late = {
                tid: start
                for tid, start in list(self._running.items())
                if now - start > self.limit and tid not in self._samples
            }
            if not late:
                continue
            frames = sys._current_frames()
            for tid, start in late.items():
                frame = frames.get(tid)
                if frame is not None and self._running.get(tid) == start:
                    self._samples[tid] = (start, _where(frame))

    def _starting(self) -> float:
        """Seconds this thread has spent in ``Thread.start`` (waiting for new threads to run)."""
        return float(getattr(self._local, "starting", 0.0))

    def _run_queue_wait(self) -> float:
        """Seconds this thread has spent ready to run but waiting for a CPU, since it started."""
        fd = getattr(self._local, "fd", None)
        if fd is None:
            try:
                fd = self._local.fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
            except OSError:
                self._local.fd = -1
                return 0.0
        if fd < 0:
            return 0.0
        try:
            return int(os.pread(fd, 128, 0).split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0

    def _gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self._gc_time += time.perf_counter() - self._gc_started
            self._gc_started = 0.0


def _where(frame: Any) -> str:
    """The innermost frames of a stack, innermost first, the guard's own left out."""
    stack = [f for f in traceback.extract_stack(frame) if f.filename != __file__]
    return " <- ".join(f"{f.filename}:{f.lineno} {f.name}" for f in reversed(stack[-8:]))


def _describe(handle: asyncio.events.Handle) -> str:
    callback = getattr(handle, "_callback", None)
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        where = f" at {frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
        return f"task {getattr(coro, '__qualname__', coro)!r}{where}"
    return repr(handle)
