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
asyncio's synchronous fork and exec of a subprocess: that is the newcomer's scheduling delay; a
child spawned on another thread counts too, as CPython 3.11 holds the GIL until it has exec'd).
Waiting for the GIL counts as waiting for a CPU when the thread holding it was itself waiting
for one: so of the time the loop's thread was off its CPU, up to the run-queue delay of this
process's other Python threads is excused too (the CPU time the loop's thread spent is never
excused), and so is time the hypervisor gave our virtual CPU to another guest (steal). So a
loaded 2-core machine does not make a short callback look long, while a callback that computes
for too long is caught whatever the load, and one that sleeps or waits on a socket whenever the
process's other threads are not starved meanwhile. A test that
knowingly blocks (e.g. loading a model inside the loop at startup) says so with
``@pytest.mark.allow_blocking("why")``.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import gc
import os
import resource
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["BLOCKED", "BlockingMonitor", "Snapshot", "children", "socket_fds"]

#: How long one callback may hold the event loop (seconds).
BLOCKED = 0.1
#: How old the other threads' run-queue figures may be when a callback starts (seconds).
_REFRESH = 0.005


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
        self._thread_fds: dict[int, int] = {}  # native thread id -> its /proc schedstat, open
        self._spawning: dict[int, float] = {}  # thread id -> when its running child spawn began
        self._spawned: deque[tuple[int, float, float]] = deque(maxlen=64)  # (thread id, began, ended)

    def install(self) -> None:
        if self._original is not None:
            return
        original = asyncio.events.Handle._run
        monitor = self

        def _run(handle: asyncio.events.Handle) -> None:
            start, usage, waited = time.perf_counter(), _usage(), monitor._run_queue_wait()
            others = monitor._others_baseline(start)
            excused = monitor._gc_time + monitor._starting()
            try:
                original(handle)
            finally:
                elapsed = time.perf_counter() - start
                if elapsed > monitor.limit:
                    monitor._judge(handle, elapsed, usage, waited, others, excused)

        original_start = threading.Thread.start

        def start(thread: threading.Thread) -> None:
            began = time.perf_counter()
            try:
                original_start(thread)
            finally:
                monitor._local.starting = monitor._starting() + time.perf_counter() - began

        original_spawn = subprocess.Popen._execute_child  # type: ignore[attr-defined]

        def spawn(popen: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
            # CPython 3.11 holds the GIL through fork/vfork until the child has exec'd: a child
            # spawned on *any* thread (a worker starting multiprocessing's fork server) stops the
            # loop's thread too, for as long as the kernel takes to run the newcomer.
            began = time.perf_counter()
            me = threading.get_ident()
            monitor._spawning[me] = began
            try:
                original_spawn(popen, *args, **kwargs)
            finally:
                ended = time.perf_counter()
                del monitor._spawning[me]
                monitor._spawned.append((me, began, ended))
                monitor._local.starting = monitor._starting() + ended - began

        self._original, self._original_start, self._original_spawn = original, original_start, original_spawn
        asyncio.events.Handle._run = _run  # type: ignore[method-assign]
        threading.Thread.start = start  # type: ignore[method-assign]
        subprocess.Popen._execute_child = spawn  # type: ignore[attr-defined]
        gc.callbacks.append(self._gc)

    def uninstall(self) -> None:
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
        self,
        handle: asyncio.events.Handle,
        elapsed: float,
        usage: resource.struct_rusage,
        waited: float,
        others: dict[int, float],
        excused: float,
    ) -> None:
        """Count only the time the loop's thread was not merely waiting for a CPU (itself, or the
        holder of the GIL), the collector or a new thread to start."""
        excused = self._gc_time + self._starting() - excused
        waited = self._run_queue_wait() - waited
        now_usage = _usage()
        cpu = now_usage.ru_utime + now_usage.ru_stime - usage.ru_utime - usage.ru_stime
        off_cpu = max(0.0, elapsed - waited - cpu)
        excused += min(off_cpu, self._spawn_overlap(time.perf_counter() - elapsed))
        now = self._others_wait()
        gil = min(off_cpu, sum(now[tid] - before for tid, before in others.items() if tid in now))
        # Time the hypervisor ran another guest on our virtual CPU ("steal") shows nowhere in the
        # thread's own figures: the thread neither ran, nor waited, nor slept (0.75 s seen under load).
        stolen = min(max(0.0, off_cpu - gil), max(0.0, _steal() - self._local.steal))
        blocked = elapsed - waited - gil - stolen - excused
        if blocked > self.limit:
            self.offenders.append(
                f"{_describe(handle)} held the loop for {blocked:.3f} s (of {elapsed:.3f} s: "
                f"{cpu:.3f} s on a CPU, {waited:.3f} s waiting for one, {gil:.3f} s for the GIL's holder, "
                f"{stolen:.3f} s stolen by the hypervisor; "
                f"{now_usage.ru_nvcsw - usage.ru_nvcsw} waits, "
                f"{now_usage.ru_majflt - usage.ru_majflt} major page faults)"
            )

    def _spawn_overlap(self, start: float) -> float:
        """Seconds since ``start`` during which another thread was spawning a child process
        (this thread's own spawns are excused whole, by :meth:`_starting`)."""
        now, me = time.perf_counter(), threading.get_ident()
        spans = [(began, ended) for tid, began, ended in list(self._spawned) if tid != me]
        spans += [(began, now) for tid, began in list(self._spawning.items()) if tid != me]
        covered, reached = 0.0, start
        for began, ended in sorted(spans):
            began = max(began, reached)
            if ended > began:
                covered += ended - began
                reached = ended
        return covered

    def _starting(self) -> float:
        """Seconds this thread has spent in ``Thread.start`` (waiting for new threads to run)."""
        return float(getattr(self._local, "starting", 0.0))

    def _others_baseline(self, now: float) -> dict[int, float]:
        """:meth:`_others_wait` as of at most ``_REFRESH`` s before ``now`` (reading it for every
        callback would triple the guard's cost; a baseline a few ms early excuses a few ms more)."""
        local = self._local
        if now - getattr(local, "others_at", -1.0) > _REFRESH:
            local.others, local.steal, local.others_at = self._others_wait(), _steal(), now
        return local.others  # type: ignore[no-any-return]

    def _others_wait(self) -> dict[int, float]:
        """The run-queue delay (seconds) of each other live Python thread of this process."""
        me = threading.get_native_id()
        found: dict[int, float] = {}
        fds: dict[int, int] = self._thread_fds
        for thread in threading.enumerate():
            tid = thread.native_id
            if tid is None or tid == me:
                continue
            fd = fds.get(tid)
            if fd is None:
                try:
                    fd = fds[tid] = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
                except OSError:
                    continue
            try:
                found[tid] = int(os.pread(fd, 128, 0).split()[1]) / 1e9
            except (OSError, IndexError, ValueError):
                found.pop(tid, None)
        # An ended thread's file still reads (the kernel keeps its task while the file is open):
        # close the files of threads no longer alive, or every thread of the session keeps one.
        for tid in [tid for tid in fds if tid not in found]:
            ended = fds.pop(tid, None)
            if ended is not None:
                os.close(ended)
        return found

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


_STAT_FD: list[int] = []
_TICK = 1 / os.sysconf("SC_CLK_TCK")


def _steal() -> float:
    """Seconds of CPU time the hypervisor gave other guests, summed over this machine's CPUs
    (``/proc/stat``, in clock ticks of 10 ms: a coarse figure, 0 where there is none)."""
    if not _STAT_FD:
        try:
            _STAT_FD.append(os.open("/proc/stat", os.O_RDONLY))
        except OSError:
            _STAT_FD.append(-1)
    if _STAT_FD[0] < 0:
        return 0.0
    try:
        fields = os.pread(_STAT_FD[0], 256, 0).split(b"\n", 1)[0].split()
        return int(fields[8]) * _TICK if len(fields) > 8 else 0.0
    except (OSError, ValueError):
        return 0.0


def _usage() -> resource.struct_rusage:
    """This thread's resource usage (CPU time, voluntary context switches, page faults)."""
    return resource.getrusage(resource.RUSAGE_THREAD)


def _describe(handle: asyncio.events.Handle) -> str:
    callback = getattr(handle, "_callback", None)
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        where = f" at {frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else ""
        return f"task {getattr(coro, '__qualname__', coro)!r}{where}"
    return repr(handle)
