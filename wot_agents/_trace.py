"""W3C Trace Context: ``traceparent`` / ``tracestate`` carried from a caller to the agents it calls.

The current trace lives in a context variable; every binding client sends it with what it sends
(HTTP: the ``traceparent`` and ``tracestate`` headers; the LMOS WebSocket binding: the message
envelope's members of the same names; MQTT 5: user properties of the same names), so code that
runs ``with use_trace(trace):`` has every interaction it starts joined to that trace. The runtime
does this for each turn, as a child span of the trace its client sent (or of a new one)::

    trace = TraceContext.parse(request.headers.get("traceparent"), request.headers.get("tracestate"))
    with use_trace((trace or TraceContext.new()).child()):
        await thing.chat(messages)

The serving side is the mirror image: every binding server handles a request inside
:func:`continue_trace` of the trace the request carried, so an agent's handler finds its
caller's trace in :data:`current_trace` (a chat handler also as ``request.trace``), the calls it
makes join that trace, and :class:`TraceLogFilter` puts the trace id on its log records.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = [
    "TraceContext",
    "TraceLogFilter",
    "caller_trace",
    "continue_trace",
    "current_trace",
    "trace_headers",
    "use_trace",
]

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[^\s]*)?$")
_ZERO_TRACE, _ZERO_PARENT = "0" * 32, "0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    """A ``traceparent`` (version 00: ``00-<trace-id>-<parent-id>-<flags>``) and its ``tracestate``."""

    traceparent: str
    tracestate: str | None = None

    @classmethod
    def parse(cls, traceparent: str | None, tracestate: str | None = None) -> TraceContext | None:
        """The context a caller sent, or None when ``traceparent`` is absent or invalid (the Trace
        Context rules: lower-case hex, version ``ff`` forbidden, all-zero ids forbidden, version
        00 exactly 55 characters; a later version may append fields)."""
        if not traceparent:
            return None
        value = traceparent.strip()
        match = _TRACEPARENT.match(value)
        if match is None:
            return None
        version, trace_id, parent_id, _, rest = match.groups()
        if version == "ff" or trace_id == _ZERO_TRACE or parent_id == _ZERO_PARENT:
            return None
        if version == "00" and rest:
            return None
        state = tracestate.strip() if tracestate and tracestate.strip() else None
        return cls(value, state)

    @classmethod
    def new(cls, *, sampled: bool = True) -> TraceContext:
        """The start of a new trace."""
        return cls(f"00-{_random_id(128)}-{_random_id(64)}-{'01' if sampled else '00'}")

    @property
    def trace_id(self) -> str:
        return self.traceparent.split("-")[1]

    @property
    def parent_id(self) -> str:
        return self.traceparent.split("-")[2]

    def child(self) -> TraceContext:
        """The same trace with a new span id: what an intermediary sends on (``tracestate`` kept)."""
        flags = self.traceparent.split("-")[3]
        return TraceContext(f"00-{self.trace_id}-{_random_id(64)}-{flags}", self.tracestate)

    def headers(self) -> dict[str, str]:
        members = {"traceparent": self.traceparent}
        if self.tracestate:
            members["tracestate"] = self.tracestate
        return members


def _random_id(bits: int) -> str:
    """A random, non-zero id of ``bits`` bits in lower-case hex (Trace Context forbids all zeros).

    Python's Mersenne Twister, as OpenTelemetry's id generator uses: ids must be unique, not
    secret, and ``secrets`` costs a system call each (two or three a runtime turn; ~6 us).
    ``random`` reseeds in a forked child, so forked workers do not repeat each other's ids.
    """
    value = 0
    while not value:
        value = random.getrandbits(bits)
    return f"{value:0{bits // 4}x}"


#: The trace the running code belongs to, if any.
current_trace: ContextVar[TraceContext | None] = ContextVar("wot_agents_trace", default=None)


@contextmanager
def use_trace(trace: TraceContext | None) -> Iterator[TraceContext | None]:
    """Make ``trace`` current inside the block (None: no trace)."""
    token = current_trace.set(trace)
    try:
        yield trace
    finally:
        current_trace.reset(token)


def trace_headers() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the current trace; empty outside any."""
    trace = current_trace.get()
    return trace.headers() if trace is not None else {}


def caller_trace(traceparent: object, tracestate: object = None) -> TraceContext | None:
    """The trace a request carried, as the span that handles it: a child of the caller's (so
    the calls the handler makes name this span as their parent); None when the request carried
    none or an invalid one. Non-string members (a hostile WebSocket envelope) count as absent."""
    parent = TraceContext.parse(
        traceparent if isinstance(traceparent, str) else None,
        tracestate if isinstance(tracestate, str) else None,
    )
    return parent.child() if parent is not None else None


def continue_trace(
    traceparent: object, tracestate: object = None
) -> AbstractContextManager[TraceContext | None]:
    """Handle a request inside the trace it carried (:func:`caller_trace`). A task of its own
    may instead ``current_trace.set(caller_trace(...))``: its context is a copy, nothing to
    restore (a ``use_trace(...).__enter__()`` left unexited would restore at once, when the
    generator behind it is collected)."""
    return use_trace(caller_trace(traceparent, tracestate))


class TraceLogFilter(logging.Filter):
    """Puts the current trace on every record it sees as ``trace_id`` and ``span_id`` (``-``
    outside any trace), so a log format can show them (``%(trace_id)s``) and a log collector
    can join an agent's lines to the runtime's. Add it to a handler, not a logger: a handler's
    filters see the records of every logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        trace = current_trace.get()
        record.trace_id = trace.trace_id if trace is not None else "-"
        record.span_id = trace.parent_id if trace is not None else "-"
        return True
