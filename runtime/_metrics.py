"""Prometheus metrics of the runtime, written in the text exposition format (version 0.0.4).

A few counters, gauges and histograms need no client library: :class:`Metrics` keeps them and
renders ``GET /metrics``. Label values are escaped as the format requires.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

__all__ = ["Metrics"]

#: Latency buckets (seconds): from a cache-fast explicit turn to an LLM agent thinking.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{key}="{_escape(value)}"' for key, value in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value


class Metrics:
    """The runtime's metrics; ``gauges`` are read when rendered (e.g. open streams)."""

    def __init__(self) -> None:
        self._help: dict[str, tuple[str, str]] = {}
        self._counters: dict[str, dict[Labels, float]] = {}
        self._histograms: dict[str, dict[Labels, _Histogram]] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self.describe("runtime_turns_total", "counter", "Turns answered or refused, by tenant and outcome.")
        self.describe("runtime_turn_seconds", "histogram", "Time to answer a turn, by transport.")
        self.describe("runtime_routing_decisions_total", "counter", "Agents chosen, by agent and method.")
        self.describe("runtime_abstentions_total", "counter", "Turns the router found no agent for.")
        self.describe("runtime_agent_errors_total", "counter", "Failed forwards, by agent and HTTP status.")

    def describe(self, name: str, kind: str, text: str) -> None:
        self._help[name] = (kind, text)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        series = self._counters.setdefault(name, {})
        series[key] = series.get(key, 0.0) + amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        series = self._histograms.setdefault(name, {})
        histogram = series.get(key)
        if histogram is None:
            histogram = series[key] = _Histogram(BUCKETS)
        histogram.observe(value)

    def gauge(self, name: str, text: str, read: Callable[[], float]) -> None:
        self.describe(name, "gauge", text)
        self._gauges[name] = read

    def value(self, name: str, **labels: str) -> float:
        """A counter's current value (tests)."""
        return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        for name, (kind, text) in sorted(self._help.items()):
            lines.append(f"# HELP {name} {text}")
            lines.append(f"# TYPE {name} {kind}")
            if kind == "counter":
                for labels, value in sorted(self._counters.get(name, {}).items()):
                    lines.append(f"{name}{_labels(labels)} {_number(value)}")
            elif kind == "histogram":
                for labels, histogram in sorted(self._histograms.get(name, {}).items()):
                    total = 0
                    for bound, count in zip((*histogram.buckets, math.inf), histogram.counts, strict=True):
                        total += count
                        le = 'le="' + _number(bound) + '"'
                        lines.append(f"{name}_bucket{_labels(labels, le)} {total}")
                    lines.append(f"{name}_sum{_labels(labels)} {_number(histogram.sum)}")
                    lines.append(f"{name}_count{_labels(labels)} {total}")
            elif name in self._gauges:
                lines.append(f"{name} {_number(self._gauges[name]())}")
        return "\n".join(lines) + "\n"
