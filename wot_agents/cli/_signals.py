"""Ctrl-C and SIGTERM: how every long-running subcommand (serve, directory, runtime) ends.

The signals set an event instead of raising ``KeyboardInterrupt`` wherever the loop happens to be,
so the command leaves its ``async with`` blocks in order (goodbyes sent, connections closed) and
prints no traceback on a clean Ctrl-C.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["stop_on_signals"]

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
