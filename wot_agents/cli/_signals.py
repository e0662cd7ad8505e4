"""Ctrl-C and SIGTERM: how every long-running subcommand (serve, directory, runtime, discover
``--watch`` / ``--bridge``) ends.

The signals set an event instead of raising ``KeyboardInterrupt`` wherever the loop happens to be,
so the command leaves its ``async with`` blocks in order (goodbyes sent, connections closed) and
prints no traceback. Stopped either way, the command exits 0: stopping a server or a watcher is
what the user asked for, not a failure (gunicorn, nginx and Caddy do the same, and Docker,
Kubernetes and systemd count 0 as a clean stop). A finite command interrupted by Ctrl-C exits 130
(``cli.main``). The handlers are installed before the command starts its services, so a signal
during start-up stops it cleanly too, once it has started.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager

__all__ = ["stop_on_signals", "until_stopped"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals() -> Iterator[asyncio.Event]:
    """An event that SIGINT or SIGTERM sets while the block runs; await it where the command stops."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)


async def until_stopped(stop: asyncio.Event, work: Awaitable[None]) -> None:
    """Run ``work`` until it ends (its error raised) or ``stop`` is set (it is cancelled then)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()  # no effect on a task that has ended
        stopped.cancel()
        await asyncio.wait({task, stopped})
    if not task.cancelled():
        task.result()
