"""Safe JSON parsing for documents that come from outside (files, the network).

One place decides how big a document may be and how deep it may nest, so a hostile or broken
document gets a clear :class:`DescriptionError` instead of a ``MemoryError`` or a
``RecursionError`` deep inside a validator.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from ._errors import DescriptionError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_DEPTH",
    "duplicate_members",
    "escape_pointer_token",
    "loads_document",
    "loads_json",
    "pointer_from_path",
]

#: Largest document accepted by default: generous for a TD (typically 2-50 KB), small for memory.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
#: Deepest nesting accepted: far beyond any real TD, far below Python's recursion limit.
MAX_DEPTH = 128


def loads_document(data: str | bytes, *, max_bytes: int | None = None) -> Any:
    """Parse JSON text, refusing documents that are too large, too deep or not JSON."""
    try:
        return loads_json(data, max_bytes=max_bytes)
    except json.JSONDecodeError as exc:
        raise DescriptionError(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError as exc:
        raise DescriptionError(f"not valid UTF-8 text: {exc.reason} at byte {exc.start}") from None


def loads_json(data: str | bytes, *, max_bytes: int | None = None) -> Any:
    """Like :func:`loads_document`, but text that is not JSON raises ``json.JSONDecodeError`` or
    ``UnicodeDecodeError`` as ``json.loads`` does, for callers that accept other text too; JSON
    beyond the limits (size, depth, number length) is a ``DescriptionError``."""
    limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    size = len(data.encode() if isinstance(data, str) else data)
    if size > limit:
        raise DescriptionError(f"document is {size} bytes, larger than the limit of {limit} bytes")
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except RecursionError:
        raise DescriptionError(f"document nests deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # an integer too long to convert (CVE-2020-10735's limit), not a JSON error
        digits = sys.get_int_max_str_digits()
        raise DescriptionError(f"document has a number longer than {digits} digits") from None
    if _depth_exceeds(document, MAX_DEPTH):
        raise DescriptionError(f"document nests deeper than {MAX_DEPTH} levels")
    return document


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


class _Members(list[tuple[str, Any]]):
    """An object's members as written, duplicates included."""


def duplicate_members(data: str | bytes) -> list[str]:
    """JSON Pointers of the members whose name appears again in the same object.

    RFC 8259 4: names SHOULD be unique, and parsers keep one of them (Python: the last), so the
    others would be lost without a word; a TD's maps (properties, forms' members...) are
    ambiguous with them. The text must be JSON (see :func:`loads_json`).
    """
    root = json.loads(data, object_pairs_hook=_Members)
    found: list[str] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, _Members):
            seen: set[str] = set()
            for name, value in node:
                if name in seen:
                    found.append(pointer_from_path((*path, name)))
                seen.add(name)
                stack.append((value, (*path, name)))
        elif isinstance(node, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(node))
    return sorted(set(found))


def escape_pointer_token(token: str | int) -> str:
    """Escape one JSON Pointer reference token (RFC 6901: ``~`` -> ``~0``, ``/`` -> ``~1``)."""
    return str(token).replace("~", "~0").replace("/", "~1")


def pointer_from_path(path: Iterable[str | int]) -> str:
    """The JSON Pointer of a path of keys and indexes; the document itself is ``""``."""
    return "".join("/" + escape_pointer_token(token) for token in path)
