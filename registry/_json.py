"""JSON text in and out of the directory.

Serializing is orjson's: every registration serializes the Enriched TD and journals its event,
~2 us each per bench agent with orjson against ~27 us with the standard library. orjson refuses
integers beyond 64 bits, which JSON allows: those documents take the standard library's path.
Parsing stays with the standard library, because orjson turns such integers into floats
silently; it refuses ``NaN`` and ``Infinity``, which are not JSON (RFC 8259) and which orjson
would write back as ``null``.

What the directory accepts it must store unchanged and be able to work on, so parsing refuses,
with a :class:`JSONLimitError` saying why, what it could not keep or handle: numbers a 64-bit
float cannot hold (``1e400`` would become infinity and then ``null``; ``1e-400`` zero), integers
of more than 4300 digits (Python's guard against quadratic conversions), and, for request
bodies, nesting deeper than :data:`MAX_DEPTH` (both indexes and the JSON Schema validation
recurse over the document) and objects that repeat a member name (:class:`DuplicateMembers`:
one of them would be dropped without a word).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from wot_agents._json import duplicate_members

__all__ = ["MAX_DEPTH", "DuplicateMembers", "JSONLimitError", "depth", "dumps", "loads"]

#: Deepest nesting of objects and arrays a stored description (or a filter) may have. Real TDs
#: stay under 10 (the W3C TD 1.1 examples: 6; our agents: 7); 32 leaves room for deep data
#: schemas while every recursive consumer (JSON-LD -> RDF, JSONPath, validation) stays far from
#: Python's recursion limit.
MAX_DEPTH = 32


class JSONLimitError(ValueError):
    """JSON that is well-formed but that the directory will not accept (the message says why)."""


class DuplicateMembers(JSONLimitError):
    """Objects that repeat a member name; ``pointers`` name each repetition."""

    def __init__(self, pointers: list[str]) -> None:
        super().__init__("member names repeated in one object: " + ", ".join(pointers or ["(unknown)"]))
        self.pointers = pointers


class _Repeated(Exception):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise _Repeated
    return members


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON, members in insertion order."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def loads(data: bytes | str, *, max_depth: int | None = None) -> Any:
    """Parse JSON; raises :class:`json.JSONDecodeError` (a ValueError) for text that is not JSON
    and :class:`JSONLimitError` (a ValueError) for JSON beyond the limits above; ``max_depth``
    (for request bodies) also refuses repeated member names."""
    hook = _unique if max_depth is not None else None
    try:
        value = json.loads(data, parse_constant=_refuse, parse_float=_float, object_pairs_hook=hook)
    except _Repeated:
        raise DuplicateMembers(duplicate_members(data)) from None
    except (json.JSONDecodeError, JSONLimitError, UnicodeDecodeError):
        raise
    except RecursionError:
        limit = max_depth or MAX_DEPTH
        raise JSONLimitError(f"the JSON nests too deeply (the limit is {limit} levels)") from None
    except ValueError as exc:  # int(): "Exceeds the limit (4300 digits) for integer string conversion..."
        raise JSONLimitError(f"a number cannot be read: {str(exc).split(';')[0]}") from None
    if max_depth is not None and depth(value, max_depth) > max_depth:
        raise JSONLimitError(f"the JSON nests objects and arrays deeper than the limit of {max_depth} levels")
    return value


def depth(value: Any, stop: int | None = None) -> int:
    """Nesting levels of objects and arrays (a scalar: 0), counted without recursion; stops
    counting once past ``stop``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        if stop is not None and deepest > stop:
            return deepest
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _float(text: str) -> float:
    value = float(text)
    mantissa = text.lower().split("e")[0]
    if math.isinf(value) or (value == 0.0 and any(c in "123456789" for c in mantissa)):
        raise JSONLimitError(f"the number {text[:40]} is out of a 64-bit float's range; it would not be kept")
    return value


def _refuse(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON value", name, 0)
