"""SIGTERM unwinds a bench the way Ctrl-C does.

A bench starts real servers (llama.cpp, the directory, agents, a mosquitto broker, network
namespaces) and stops them in its ``finally`` and ``with`` blocks. Python's default SIGTERM
action ends the process without running them, so a bench stopped by a timeout or a CI runner
left its servers behind. Raising ``SystemExit`` instead unwinds the stack; under
``asyncio.run`` the main task is then cancelled, so its ``finally`` blocks run too.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

__all__ = ["unwind_on_sigterm"]


def _exit(signum: int, _frame: FrameType | None) -> None:
    print("terminated", file=sys.stderr)
    sys.exit(128 + signum)


def unwind_on_sigterm() -> None:
    """Make SIGTERM raise ``SystemExit(143)`` in the main thread (call before starting anything)."""
    signal.signal(signal.SIGTERM, _exit)
