"""Retry delays: the one backoff of the loops that retry after a failure (the Kubernetes
informer's watch, leader election, the LMOS channel operator).

``Backoff(0.1, 10.0, jitter=0.5)`` waits 0.1 s (spread over 0.05-0.15 s, so clients that failed
together do not retry together), twice as long after each further failure up to 10 s, and 0.1 s
again after :meth:`Backoff.reset` (a success). Without ``maximum`` the delay stays ``initial``: a
steady cadence, for a loop whose pace is part of a protocol (a Lease is renewed every few seconds,
failure or not).
"""

from __future__ import annotations

import asyncio
import random

__all__ = ["Backoff"]


class Backoff:
    """The delays between the attempts of one retry loop (keep one per loop)."""

    def __init__(self, initial: float, maximum: float | None = None, *, jitter: float = 0.0) -> None:
        maximum = initial if maximum is None else maximum
        if not 0 <= initial <= maximum:
            raise ValueError("the delays need 0 <= initial <= maximum")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter is a fraction of the delay, from 0 to 1")
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.delay = initial  # the next wait, before jitter

    def reset(self) -> None:
        """Start over from ``initial`` (after a success)."""
        self.delay = self.initial

    def next(self) -> float:
        """The wait before the next attempt (jittered); the one after it is twice as long, capped."""
        delay = self.delay * (1 - self.jitter + 2 * self.jitter * random.random())
        self.delay = min(self.delay * 2, self.maximum)
        return delay

    async def wait(self) -> None:
        """Sleep for :meth:`next`."""
        await asyncio.sleep(self.next())
