"""``/search/jsonpath``: RFC 9535 JSONPath over the array of every stored description.

The library is jsonpath-rfc9535: it implements RFC 9535 exactly (it passes the JSONPath
Compliance Test Suite) and has no dialect extensions, so a query behaves here as in any other
conforming implementation. To stay fast on large directories, a query whose filter is a
disjunction of conjunctions, each with an equality (``$[?@.m == 'v' && ...]``, ``@.a.b == 5``,
``match(@.p, 'literal')``, ``... || ...``), is evaluated only on the descriptions that can
satisfy one of them (:func:`preselection`: the field index for top-level members, the value
index for any path); every other query scans, within the time limit, on a thread that is
stopped when the time is up (one scan at a time: see :class:`_Evaluation`).
``$`` inside a filter is the whole array of descriptions (RFC 9535 2.3.5: the root node), so
such queries are evaluated on the whole array.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
import re
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jsonpath_rfc9535

from ._problems import HTTPProblem

__all__ = [
    "JsonPathQuery",
    "Preselection",
    "preselection",
    "uses_root_inside",
]

_NAME = r"@(?:\.([A-Za-z_\u0080-\uffff][\w\u0080-\uffff]*)|\[\s*'([^'\\]*)'\s*\]|\[\s*\"([^\"\\]*)\"\s*\])"
_LITERAL = r"(?:'([^'\\]*)'|\"([^\"\\]*)\")"
_EQ = re.compile(rf"^\s*{_NAME}\s*==\s*{_LITERAL}\s*$")
# Any singular path from @ (names and indexes): only the literal is captured.
_PATH = r"@(?:\.[A-Za-z_\u0080-\uffff][\w\u0080-\uffff]*|\[\s*(?:'[^'\\]*'|\"[^\"\\]*\"|-?\d+)\s*\])+"
_PATH_EQ = re.compile(rf"^\s*{_PATH}\s*==\s*{_LITERAL}\s*$")
_PATH_EQ_REVERSED = re.compile(rf"^\s*{_LITERAL}\s*==\s*{_PATH}\s*$")
_EQ_REVERSED = re.compile(rf"^\s*{_LITERAL}\s*==\s*{_NAME}\s*$")
#: A JSON number literal (RFC 9535 2.3.5.1), compared by value: 1 == 1.0 == 1e0.
_NUMBER = r"(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
_NUMBER_EQ = re.compile(rf"^\s*{_PATH}\s*==\s*{_NUMBER}\s*$")
_NUMBER_EQ_REVERSED = re.compile(rf"^\s*{_NUMBER}\s*==\s*{_PATH}\s*$")
_MATCH = re.compile(rf"^\s*match\(\s*{_PATH}\s*,\s*{_LITERAL}\s*\)\s*$")
#: I-Regexp (RFC 9485) metacharacters: a match() pattern without them is a string equality.
_REGEX_META = re.compile(r"[.\\^$|?*+()\[\]{}]")
_LITERAL_MAX = 256  # the field index keeps top-level strings up to this length


def _first_group(match: re.Match[str], groups: Iterable[int]) -> str:
    return next(match.group(g) for g in groups if match.group(g) is not None)


@dataclass(frozen=True, slots=True)
class _Segment:
    """The first bracketed segment of ``$[?...]...``, scanned outside string literals."""

    disjuncts: list[list[str]]  # the filter split at top-level ``||``, each part at top-level ``&&``
    several_selectors: bool  # a top-level ``,``: ``$[?..., 0]``
    end: int  # where the closing bracket is in the scanned text

    @property
    def conjuncts(self) -> list[str]:
        """The conjuncts of a filter without a top-level ``||`` (else all of its parts)."""
        return [part for conjunction in self.disjuncts for part in conjunction]


def _scan(text: str) -> _Segment | None:
    """Scan ``text`` (what follows ``$[?``, or any opening bracket) up to the bracket closing it;
    None if none does. The one scanner of brackets and string literals here."""
    depth, quote, start = 0, "", 0
    parts: list[str] = []
    disjuncts: list[list[str]] = []
    several = False
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
                return _Segment([*disjuncts, [*parts, text[start:i]]], several, i)
            depth -= 1
        elif char == "," and depth == 0:
            several = True
        elif depth == 0 and text.startswith(("&&", "||"), i):
            parts.append(text[start:i])
            if char == "|":  # && binds tighter than ||: a new conjunction starts
                disjuncts.append(parts)
                parts = []
            start = i + 2
            i += 1
        i += 1
    return None


def _unwrap(text: str) -> str:
    """``text`` without the parentheses around all of it (``(a) && (b)`` keeps its own)."""
    while text.startswith("(") and (inner := _scan(text[1:])) is not None and inner.end == len(text) - 2:
        text = text[1:-1].strip()
    return text


def _flatten(conjunction: list[str]) -> list[str]:
    """The conditions of a conjunction, parenthesised conjunctions in it flattened."""
    found = []
    parts = list(conjunction)
    while parts:
        inner = _unwrap(parts.pop(0).strip())
        nested = _scan(inner + ")")  # a parenthesised conjunction, ``(@.a=='x' && @.b=='y')``
        if nested is not None and len(nested.disjuncts) == 1 and len(nested.conjuncts) > 1:
            parts += nested.conjuncts
        else:
            found.append(inner)
    return found


def _disjuncts(query: str) -> list[list[str]] | None:
    """The conjunctions of ``$[?filter]...`` when the filter is a disjunction of conjunctions
    (one conjunction without ``||``; parentheses flattened); None when the query is not of
    that form. Every result satisfies every condition of one of them (a ``!`` condition too:
    it is one condition, never an equality taken for pre-selection)."""
    stripped = query.strip()
    if not stripped.startswith("$[?"):
        return None
    segment = _scan(stripped[3:])
    if segment is None or segment.several_selectors:
        return None  # no safe pre-selection; later segments only narrow what the filter selected
    return [flat for conjunction in segment.disjuncts for flat in _expand(conjunction)]


def _expand(conjunction: list[str]) -> list[list[str]]:
    """A conjunction, flattened; one that is a parenthesised disjunction, its disjuncts."""
    flat = _flatten(conjunction)
    if len(flat) == 1:
        nested = _scan(flat[0] + ")")
        if nested is not None and len(nested.disjuncts) > 1 and not nested.several_selectors:
            return [expanded for inner in nested.disjuncts for expanded in _expand(inner)]
    return [flat]


def _member_term(condition: str) -> tuple[str, str] | None:
    if (match := _EQ.match(condition)) is not None:
        key, value = _first_group(match, (1, 2, 3)), _first_group(match, (4, 5))
    elif (match := _EQ_REVERSED.match(condition)) is not None:
        key, value = _first_group(match, (3, 4, 5)), _first_group(match, (1, 2))
    else:
        return None
    return (key, value) if len(value) <= _LITERAL_MAX else None


def _value_term(condition: str) -> str | int | float | None:
    match = _PATH_EQ.match(condition) or _PATH_EQ_REVERSED.match(condition)
    if match is not None:
        return next(g for g in match.groups() if g is not None)
    match = _NUMBER_EQ.match(condition) or _NUMBER_EQ_REVERSED.match(condition)
    if match is not None:
        number = float(match.group(1))
        if not math.isfinite(number):
            return None
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    match = _MATCH.match(condition)  # match() with a pattern without metacharacters: equality
    if match is not None:
        pattern = next(g for g in match.groups() if g is not None)
        if not _REGEX_META.search(pattern):
            return pattern
    return None


@dataclass(frozen=True, slots=True)
class Preselection:
    """What one conjunction of a filter requires: top-level member equalities (exact, from the
    field index) and string values anywhere (candidates, from the value index)."""

    members: list[tuple[str, str]]
    values: list[str | int | float]


def preselection(query: str) -> list[Preselection] | None:
    """Per conjunction of a disjunctive filter, the equalities its results must satisfy; None when
    some conjunction has none (it could select any description: the query scans)."""
    disjuncts = _disjuncts(query)
    if disjuncts is None:
        return None
    found = []
    for conjunction in disjuncts:
        members = [term for inner in conjunction if (term := _member_term(inner)) is not None]
        values = [value for inner in conjunction if (value := _value_term(inner)) is not None]
        if not members and not values:
            return None
        found.append(Preselection(members, values))
    return found


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


_STRINGS = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def uses_root_inside(query: str) -> bool:
    """Whether ``$`` appears past the query's start (outside string literals): then filters
    look at the whole array of descriptions, and neither pre-selection nor evaluating the
    descriptions one by one gives the same result."""
    return "$" in _STRINGS.sub("", query.strip())[1:]


class _Cancelled(BaseException):
    """Raised inside an evaluation thread whose time is up (a BaseException: nothing catches it)."""


#: Seconds between two attempts to stop an evaluation thread.
_RESEND = 0.01
#: Scans at a time, per event loop: each holds the GIL while it runs, so more of them would
#: only take turns with each other and with the event loop; the others wait (within their time).
_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def _slot() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    if loop not in _SLOTS:
        _SLOTS[loop] = asyncio.Semaphore(1)
    return _SLOTS[loop]


def _quiet_unraisable() -> None:
    """Keep :class:`_Cancelled` swallowed by a callback out of the log (others are reported)."""
    report = sys.unraisablehook
    if getattr(report, "_drops_cancelled", False):
        return

    def hook(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, _Cancelled):
            report(unraisable)

    hook._drops_cancelled = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _retrieved(outcome: asyncio.Future[Any]) -> None:
    if not outcome.cancelled():
        outcome.exception()


def _checkpoint() -> None:
    """A call: a pending asynchronous exception is raised at it."""


class _Evaluation(threading.Thread):
    """One evaluation on its own thread, stoppable at its deadline.

    The JSONPath library is pure Python, so an exception raised asynchronously in the thread
    (``PyThreadState_SetAsyncExc``) stops it at its next bytecode: the time limit ends the work,
    not only the wait for it. The scan slot is given back on the event loop, once the work is
    done or stopped, never from the thread (where the exception could cut that short).
    """

    def __init__(self, work: Callable[[], list[Any]], slot: asyncio.Semaphore) -> None:
        super().__init__(name="wot-directory-jsonpath", daemon=True)
        self._work = work
        self._slot: asyncio.Semaphore | None = slot
        self._lock = threading.Lock()
        self._finished = False
        self._loop = asyncio.get_running_loop()
        self.outcome: asyncio.Future[list[Any]] = self._loop.create_future()

    def run(self) -> None:
        try:
            result: tuple[bool, Any]
            try:
                result = True, self._work()
            except _Cancelled:
                raise
            except Exception as exc:
                result = False, exc
            with self._lock:
                self._finished = True  # from here on nothing is sent to this thread
            self._loop.call_soon_threadsafe(self._settle, result)
        except _Cancelled:
            pass  # stopped: nobody waits for the result any more
        try:
            _checkpoint()  # one sent just before _finished was set lands here
        except _Cancelled:
            pass

    def _settle(self, result: tuple[bool, Any]) -> None:
        self._free()
        if not self.outcome.done():
            if result[0]:
                self.outcome.set_result(result[1])
            else:
                self.outcome.set_exception(result[1])

    def _free(self) -> None:
        if self._slot is not None:
            self._slot.release()
            self._slot = None

    def cancel(self) -> None:
        """Stop the work; on the event loop (no-op once it has finished).

        An exception that lands in a weakref callback or a finalizer the thread runs (the
        garbage collector runs them wherever it is triggered) is swallowed there: so it is sent
        again until the thread ends, and not reported (:func:`_quiet_unraisable`).
        """
        with self._lock:
            if self._finished or self.ident is None:
                return
            # The next scan may start: this one stops within milliseconds, at its next bytecode.
            self._free()
            if not self.is_alive():
                return
            _quiet_unraisable()
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self.ident), ctypes.py_object(_Cancelled)
            )
        self._loop.call_later(_RESEND, self.cancel)


class JsonPathQuery:
    """A compiled query with the directory's limits."""

    def __init__(self, text: str, *, result_cap: int, timeout: float) -> None:
        if not text.strip():
            raise HTTPProblem(400, "the query parameter is empty; give an RFC 9535 JSONPath expression")
        try:
            self.compiled = jsonpath_rfc9535.compile(text)
        except jsonpath_rfc9535.JSONPathError as exc:
            raise HTTPProblem(400, f"not a valid RFC 9535 JSONPath query: {exc}") from None
        except RecursionError:
            raise HTTPProblem(400, "the JSONPath query nests too deeply to be parsed") from None
        self.text = text
        self.result_cap = result_cap
        self.timeout = timeout
        self.whole = uses_root_inside(text)
        self.preselection = None if self.whole else preselection(text)

    async def run(self, documents: Sequence[Callable[[], Any]]) -> list[Any]:
        """:meth:`evaluate` within the time limit: a few documents on the event loop, a scan on
        a thread of its own that is stopped when the time is up."""
        if len(documents) <= 64:
            return self.evaluate(documents)
        slot = _slot()
        try:
            async with asyncio.timeout(self.timeout):
                await slot.acquire()
        except TimeoutError:
            raise HTTPProblem(
                503, "the directory is busy with other scans; retry shortly", headers={"Retry-After": "1"}
            ) from None
        # Like a SPARQL query, the evaluation has the whole time limit once it may start.
        deadline = time.monotonic() + self.timeout
        evaluation = _Evaluation(lambda: self.evaluate(documents, deadline), slot)
        evaluation.start()
        try:
            return await asyncio.wait_for(asyncio.shield(evaluation.outcome), deadline - time.monotonic())
        except TimeoutError:
            raise self.too_slow() from None
        finally:
            evaluation.outcome.add_done_callback(_retrieved)  # an answer nobody waits for any more
            evaluation.cancel()

    def evaluate(self, documents: Iterable[Callable[[], Any]], deadline: float | None = None) -> list[Any]:
        """The values of the nodes found; ``documents`` yields loaders, in listing order."""
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        try:
            if self.whole or not _streamable(self.text):
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
        except jsonpath_rfc9535.JSONPathError as exc:
            raise HTTPProblem(400, f"the query cannot be evaluated: {exc}") from None
        except RecursionError:
            raise HTTPProblem(400, "the query nests too deeply to be evaluated") from None

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
