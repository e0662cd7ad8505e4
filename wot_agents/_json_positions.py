"""Where each JSON Pointer of a JSON text starts: line and column, for problems people can find.

Validation names a problem by JSON Pointer (``/properties/status/forms/0``); a person editing the
text wants the line. :func:`json_positions` walks the text once (it must be valid JSON, e.g.
already parsed by :func:`~wot_agents._json.loads_document`) and maps every pointer to the line and
column (both from 1) of its member's key, or of the value for array items and the root.
"""

from __future__ import annotations

import bisect
import re
from json.decoder import scanstring  # type: ignore[attr-defined]

from ._json import escape_pointer_token

__all__ = ["json_positions", "position_of"]

_WS = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null")


class _Walker:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = [0] + [m.end() for m in re.finditer("\n", text)]
        self.found: dict[str, tuple[int, int]] = {}

    def where(self, index: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.lines, index)
        return line, index - self.lines[line - 1] + 1

    def skip(self, index: int) -> int:
        match = _WS.match(self.text, index)
        return match.end() if match else index

    def value(self, index: int, pointer: str) -> int:
        """Walk the value at ``index`` (no leading space); the index just after it."""
        text = self.text
        char = text[index]
        if char == "{":
            index = self.skip(index + 1)
            if text[index] == "}":
                return index + 1
            while True:
                key_at = index
                key, index = scanstring(text, index + 1)
                child = f"{pointer}/{escape_pointer_token(key)}"
                self.found.setdefault(child, self.where(key_at))
                index = self.skip(self.skip(index) + 1)  # past the colon
                index = self.skip(self.value(index, child))
                if text[index] == "}":
                    return index + 1
                index = self.skip(index + 1)  # past the comma
        if char == "[":
            index = self.skip(index + 1)
            if text[index] == "]":
                return index + 1
            position = 0
            while True:
                child = f"{pointer}/{position}"
                self.found.setdefault(child, self.where(index))
                index = self.skip(self.value(index, child))
                if text[index] == "]":
                    return index + 1
                index = self.skip(index + 1)
                position += 1
        if char == '"':
            return int(scanstring(text, index + 1)[1])
        match = _SCALAR.match(text, index)
        if match is None:
            raise ValueError(f"not JSON at offset {index}")
        return match.end()


def json_positions(text: str) -> dict[str, tuple[int, int]]:
    """Every JSON Pointer of the valid JSON ``text`` -> (line, column) where it starts."""
    walker = _Walker(text)
    start = walker.skip(1 if text.startswith("\ufeff") else 0)
    walker.found[""] = walker.where(start)
    walker.value(start, "")
    return walker.found


def position_of(positions: dict[str, tuple[int, int]], pointer: str) -> tuple[int, int]:
    """The position of ``pointer``, or of its nearest ancestor that has one (the root at worst)."""
    while pointer not in positions and pointer:
        pointer = pointer.rpartition("/")[0]
    return positions.get(pointer, (1, 1))
