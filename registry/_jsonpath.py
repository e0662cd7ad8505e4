"""``/search/jsonpath``: RFC 9535 JSONPath over the array of every stored description.

The library is jsonpath-rfc9535: it implements RFC 9535 exactly (it passes the JSONPath
Compliance Test Suite) and has no dialect extensions, so a query behaves here as in any other
conforming implementation. To stay fast on large directories, a query of the common form
``$[?@.member == 'value' && ...]...`` is evaluated only on the descriptions whose top-level
member has that value (from the field index); every other query scans, within the time limit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jsonpath_rfc9535

from ._problems import HTTPProblem

__all__ = ["JsonPathQuery", "preselect_terms"]

_NAME = r"@(?:\.([A-Za-z_\u0080-\uffff][\w\u0080-\uffff]*)|\[\s*'([^'\\]*)'\s*\]|\[\s*\"([^\"\\]*)\"\s*\])"
_LITERAL = r"(?:'([^'\\]*)'|\"([^\"\\]*)\")"
_EQ = re.compile(rf"^\s*{_NAME}\s*==\s*{_LITERAL}\s*$")
_EQ_REVERSED = re.compile(rf"^\s*{_LITERAL}\s*==\s*{_NAME}\s*$")
_LITERAL_MAX = 256  # the field index keeps top-level strings up to this length


def _first_group(match: re.Match[str], groups: Iterable[int]) -> str:
    return next(match.group(g) for g in groups if match.group(g) is not None)


@dataclass(frozen=True, slots=True)
class _Segment:
    """The first bracketed segment of ``$[?...]...``, scanned outside string literals."""

    conjuncts: list[str]  # the filter split at top-level ``&&``
    several_selectors: bool  # a top-level ``,``: ``$[?..., 0]``
    or_or_not: bool  # ``||`` or ``!`` anywhere in the filter


def _scan(text: str) -> _Segment | None:
    """Scan ``text`` (what follows ``$[?``) up to the segment's closing bracket; None if none."""
    depth, quote, start = 0, "", 0
    parts: list[str] = []
    several = or_not = False
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            if depth == 0:
                return _Segment([*parts, text[start:i]], several, or_not)
            depth -= 1
        elif text.startswith("||", i) or (char == "!" and not text.startswith("!=", i)):
            or_not = True
        elif char == "," and depth == 0:
            several = True
        elif text.startswith("&&", i) and depth == 0:
            parts.append(text[start:i])
            start = i + 2
            i += 1
        i += 1
    return None


def preselect_terms(query: str) -> list[tuple[str, str]] | None:
    """``(member, value)`` equalities every result's description must satisfy, if the query allows.

    None when the query is not ``$[?filter]...`` with at least one top-level string equality in
    a pure conjunction.
    """
    stripped = query.strip()
    if not stripped.startswith("$[?"):
        return None
    segment = _scan(stripped[3:])
    if segment is None or segment.several_selectors or segment.or_or_not:
        return None  # no safe pre-selection; later segments only narrow what the filter selected
    terms = []
    for part in segment.conjuncts:
        inner = part.strip()
        while inner.startswith("(") and inner.endswith(")"):
            inner = inner[1:-1].strip()
        if (match := _EQ.match(inner)) is not None:
            key, value = _first_group(match, (1, 2, 3)), _first_group(match, (4, 5))
        elif (match := _EQ_REVERSED.match(inner)) is not None:
            key, value = _first_group(match, (3, 4, 5)), _first_group(match, (1, 2))
        else:
            continue
        if len(value) <= _LITERAL_MAX:
            terms.append((key, value))
    return terms or None


def _streamable(query: str) -> bool:
    # Queries whose first segment is one filter or wildcard selector give, per element, the same
    # nodes in the same order whether evaluated on the whole array or element by element.
    stripped = query.strip()
    if stripped.startswith(("$[*]", "$.*")):
        return True
    if not stripped.startswith("$[?"):
        return False
    segment = _scan(stripped[3:])
    return segment is not None and not segment.several_selectors


class JsonPathQuery:
    """A compiled query with the directory's limits."""

    def __init__(self, text: str, *, result_cap: int, timeout: float) -> None:
        if not text.strip():
            raise HTTPProblem(400, "the query parameter is empty; give an RFC 9535 JSONPath expression")
        try:
            self.compiled = jsonpath_rfc9535.compile(text)
        except jsonpath_rfc9535.JSONPathError as exc:
            raise HTTPProblem(400, f"not a valid RFC 9535 JSONPath query: {exc}") from None
        self.text = text
        self.result_cap = result_cap
        self.timeout = timeout
        self.terms = preselect_terms(text)

    def evaluate(self, documents: Iterable[Callable[[], Any]]) -> list[Any]:
        """The values of the nodes found; ``documents`` yields loaders, in listing order."""
        deadline = time.monotonic() + self.timeout
        if not _streamable(self.text):
            values = self.compiled.find([load() for load in documents]).values()
            self._check(len(values), deadline)
            return values
        out: list[Any] = []
        for count, load in enumerate(documents):
            out += self.compiled.find([load()]).values()
            if count % 64 == 0:
                self._check(len(out), deadline)
        self._check(len(out), deadline)
        return out

    def _check(self, found: int, deadline: float) -> None:
        if found > self.result_cap:
            raise HTTPProblem(
                400, f"the query has more than {self.result_cap} results; make it more selective"
            )
        if time.monotonic() > deadline:
            raise self.too_slow()

    def too_slow(self) -> HTTPProblem:
        return HTTPProblem(
            400, f"the query ran longer than the limit of {self.timeout:g} s; make it more selective"
        )
