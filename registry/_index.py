"""The JSON field index behind the filter API, and the JSONPath pre-selection.

Fed from the store's change feed. For each description it keeps the few fields the common
questions ask about (``@type``, capabilities, tenants, channels, subset, protocol schemes,
security schemes, affordance names, searchable text), with an inverted index per exact-match
field, so a selective filter costs set intersections, not a scan of every description. The text
fields (substring search) keep the descriptions of each whitespace-separated token, and the
tokens joined in one string (:class:`_TextColumn`): a word's descriptions are those of the
tokens a C-speed ``str.find`` finds it in, so a query scans the vocabulary, not every
description's text. Every string and number value, at any depth, is in a hash index
(:class:`_ValueIndex`), the candidates of a JSONPath equality on any path.
"""

from __future__ import annotations

import bisect
import difflib
import itertools
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ._backend import Change, Record
from ._json import MAX_DEPTH, JSONLimitError, loads
from ._problems import HTTPProblem

__all__ = ["EXACT_FIELDS", "SORT_KEYS", "TEXT_FIELDS", "FieldIndex", "parse_filter"]

#: Exact-match fields (case-insensitive), each backed by an inverted index.
EXACT_FIELDS = (
    "id", "type", "capability", "tenant", "channel", "subset", "scheme", "security",
    "action", "property", "event",
)  # fmt: skip
#: Substring fields (case-insensitive, every word must occur): ``q`` is title, description and capabilities.
TEXT_FIELDS = ("q", "title")
SORT_KEYS = ("id", "title", "created", "modified")
#: The other parameters of ``GET /search/filter``: the filter as JSON, sorting and paging.
_QUERY_OPTIONS = ("filter", "sort", "limit", "offset", "format")
#: Top-level string members kept for JSONPath pre-selection (short values only).
_TOP_MAX = 256


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _schemes(td: Mapping[str, Any]) -> set[str]:
    base = td.get("base")
    base_scheme = urlsplit(base).scheme if isinstance(base, str) else ""
    schemes = {base_scheme} if base_scheme else set()

    def visit(forms: Any) -> None:
        for form in forms if isinstance(forms, list) else []:
            href = form.get("href") if isinstance(form, dict) else None
            if isinstance(href, str):
                schemes.add(urlsplit(href).scheme or base_scheme)

    visit(td.get("forms"))
    for kind in ("properties", "actions", "events"):
        affordances = td.get(kind)
        for affordance in affordances.values() if isinstance(affordances, dict) else ():
            if isinstance(affordance, dict):
                visit(affordance.get("forms"))
    schemes.discard("")
    return schemes


@dataclass(slots=True)
class _Entry:
    exact: tuple[tuple[str, ...], ...]  # the values of each of EXACT_FIELDS, in that order
    text: str
    title: str
    created: str
    modified: str
    top: tuple[tuple[str, str], ...]


def extract(td: Mapping[str, Any]) -> _Entry:
    capabilities = [c for c in td.get("lmos:capabilities") or [] if isinstance(c, dict)]
    security = td.get("securityDefinitions")
    registration: Mapping[str, Any] = td.get("registration") or {}
    exact = {
        "id": {td.get("id", "")},
        "type": {t.lower() for t in _strings(td.get("@type"))},
        "capability": {
            v.lower() for c in capabilities for v in (c.get("id"), c.get("name")) if isinstance(v, str)
        },
        "tenant": {t.lower() for t in _strings(td.get("lmos:supportedTenants"))},
        "channel": {t.lower() for t in _strings(td.get("lmos:supportedChannels"))},
        "subset": {t.lower() for t in _strings(td.get("lmos:subset"))},
        "scheme": _schemes(td),
        "security": {
            s["scheme"].lower()
            for s in (security.values() if isinstance(security, dict) else ())
            if isinstance(s, dict) and isinstance(s.get("scheme"), str)
        },
    }
    for kind, name in (("action", "actions"), ("property", "properties"), ("event", "events")):
        affordances = td.get(name)
        exact[kind] = {k.lower() for k in affordances} if isinstance(affordances, dict) else set()
    words = [td.get("title"), td.get("description")]
    for c in capabilities:
        words += [c.get("name"), c.get("description"), *_strings(c.get("examples"))]
    title = td.get("title")
    return _Entry(
        # Interned: the same few values (tenants, channels, schemes...) repeat in every entry.
        exact=tuple(tuple(sys.intern(v) for v in exact[name]) for name in EXACT_FIELDS),
        text="\n".join(w for w in words if isinstance(w, str)).lower(),
        title=title.lower() if isinstance(title, str) else "",
        created=str(registration.get("created", "")),
        modified=str(registration.get("modified", "")),
        top=tuple((sys.intern(k), v) for k, v in td.items() if isinstance(v, str) and len(v) <= _TOP_MAX),
    )


# A filter expression: {"and": [...]}, {"or": [...]}, {"not": expr}, or {field: value | [values], ...}.
Expr = Mapping[str, Any]


def parse_filter(expr: Any, where: str = "filter") -> Expr:
    """Check a filter expression, so errors are 400s with the offending place, not 500s."""
    if not isinstance(expr, dict) or not expr:
        raise HTTPProblem(400, f"{where} must be a non-empty JSON object")
    for key, value in expr.items():
        if key in ("and", "or"):
            if not isinstance(value, list) or not value:
                raise HTTPProblem(400, f"{where}.{key} must be a non-empty array of filters")
            for i, child in enumerate(value):
                parse_filter(child, f"{where}.{key}[{i}]")
        elif key == "not":
            parse_filter(value, f"{where}.not")
        elif key in EXACT_FIELDS or key in TEXT_FIELDS:
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, str) for v in values):
                raise HTTPProblem(400, f"{where}.{key} must be a string or a non-empty array of strings")
        else:
            fields = (*EXACT_FIELDS, *TEXT_FIELDS, "and", "or", "not")
            raise HTTPProblem(
                400,
                f"unknown filter field {where}.{key}{_suggest(key, fields)}; "
                f"the fields are {', '.join(fields)}",
            )
    return expr


def _suggest(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, if any: typos are the usual cause."""
    close = difflib.get_close_matches(name, list(known), 1)
    return f" (did you mean {close[0]!r}?)" if close else ""


Postings = dict[Any, "str | set[str]"]


def _post(index: Postings, key: Any, thing_id: str) -> None:
    # Most values (ids, titles, capability ids) belong to one description: keep the id itself
    # rather than a one-element set (~200 bytes each at 100k descriptions adds up).
    current = index.get(key)
    if current is None:
        index[key] = thing_id
    elif isinstance(current, str):
        if current != thing_id:
            index[key] = {current, thing_id}
    else:
        current.add(thing_id)


def _unpost(index: Postings, key: Any, thing_id: str) -> None:
    current = index.get(key)
    if isinstance(current, str):
        if current == thing_id:
            del index[key]
    elif current is not None:
        current.discard(thing_id)
        if len(current) == 1:
            index[key] = current.pop()


def _ids(index: Postings, key: Any) -> set[str]:
    current = index.get(key)
    if current is None:
        return set()
    return {current} if isinstance(current, str) else set(current)


class _TextColumn:
    """One text field of every entry, as the descriptions holding each whitespace-separated token.

    A query word (which has no whitespace) occurs in a text exactly when it is a substring of one
    of the text's tokens; so the descriptions holding a word are those of the tokens containing
    it, and those tokens are found by a C-speed ``str.find`` over the vocabulary joined into one
    string, not over every description's text (at 100k bench agents the ``q`` texts are 32 MB,
    their vocabulary 3 MB; natural language repeats its words far more). The postings are exact
    at every change; the joined vocabulary is rebuilt when next searched once the tokens added
    since are over a fiftieth (until then those are looked at one by one), and a removed token
    is only dropped from it then (it has no postings left meanwhile).
    """

    _SEPARATOR = "\x00"

    def __init__(self, attr: str) -> None:
        self.attr = attr
        self._postings: Postings = {}
        self._fresh: set[str] = set()  # tokens added since the vocabulary was joined
        self._dropped = 0  # tokens removed since then
        self._vocabulary = ""
        self._starts: list[int] = []
        self._tokens: list[str] = []

    def add(self, thing_id: str, entry: _Entry) -> None:
        for token in set(getattr(entry, self.attr).split()):
            if token not in self._postings:
                self._fresh.add(token)
            _post(self._postings, token, thing_id)

    def remove(self, thing_id: str, entry: _Entry) -> None:
        for token in set(getattr(entry, self.attr).split()):
            _unpost(self._postings, token, thing_id)
            if token not in self._postings:
                self._dropped += 1

    def rebuild(self) -> None:
        """Join the vocabulary again (what is searched with ``str.find``)."""
        self._tokens = list(self._postings)
        # A token with the separator in it is joined with a space there: same length, no false
        # boundary (a word with the separator in it is looked for in every token instead).
        self._vocabulary = self._SEPARATOR.join(t.replace(self._SEPARATOR, " ") for t in self._tokens)
        self._starts = list(itertools.accumulate((len(t) + 1 for t in self._tokens[:-1]), initial=0))
        self._fresh, self._dropped = set(), 0

    def containing(self, words: list[str]) -> set[str]:
        """Ids whose text contains the rarest of ``words`` (lower-case, not empty): every id whose
        text contains all of them, and others (the caller checks each).

        The rarest is the word whose tokens have the fewest postings, counted exactly; words are
        tried likeliest-rarest first (:func:`_estimate`) and a count stops once it passes the best
        so far, so a common word such as "of" or "1" costs little.
        """
        if len(self._fresh) + self._dropped > max(256, len(self._postings) // 50):
            self.rebuild()
        best: list[str] = []
        bound = sys.maxsize
        for word in sorted(set(words), key=lambda w: _estimate(w, self._vocabulary)):
            tokens = self._tokens_within(word, bound)
            if tokens is not None:
                best, bound = tokens
        found: set[str] = set()
        for token in best:
            current = self._postings.get(token)
            if isinstance(current, str):
                found.add(current)
            elif current is not None:
                found |= current
        return found

    def _tokens_within(self, word: str, bound: int) -> tuple[list[str], int] | None:
        """The tokens containing ``word`` and their postings' count, or None once over ``bound``."""
        tokens: list[str] = []
        total = 0
        for token in self._containing_word(word):
            current = self._postings.get(token)
            total += 0 if current is None else 1 if isinstance(current, str) else len(current)
            if total > bound:
                return None
            tokens.append(token)
        return tokens, total

    def _containing_word(self, word: str) -> Iterator[str]:
        if self._SEPARATOR in word:  # not findable in the joined vocabulary: every token
            yield from (token for token in self._postings if word in token)
            return
        yield from (token for token in self._fresh if word in token)
        vocabulary, starts = self._vocabulary, self._starts
        position = vocabulary.find(word)
        while position >= 0:
            index = bisect.bisect_right(starts, position) - 1
            yield self._tokens[index]
            # on to the next token: the word is in this one, however often
            position = vocabulary.find(
                word, starts[index + 1] if index + 1 < len(starts) else len(vocabulary)
            )


def _estimate(word: str, text: str) -> tuple[int, int]:
    """How common ``word`` is, for choosing the rarest: its count in a sample of the text (a
    count over all of it costs milliseconds at 100k for a word such as "agent"), then its length
    (the longer of two words unseen in the sample is likely the rarer)."""
    return text.count(word, 0, _SAMPLE), -len(word)


#: The characters of a joined vocabulary in which the words of a query are counted.
_SAMPLE = 1 << 14


_MASK = (1 << 64) - 1
#: The values of the value index: strings and numbers (booleans and null are no selective values).
Scalar = str | int | float


def _value_hashes(td: Any) -> np.ndarray[Any, np.dtype[np.uint64]]:
    # Exact types, as JSON parsing makes them (a bool is no int here): this runs on every write.
    found: set[int] = set()
    stack = [td]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is dict:
            stack.extend(node.values())
        elif kind is list:
            stack.extend(node)
        elif kind is str or kind is int or kind is float:
            found.add(hash(node) & _MASK)  # 1 and 1.0 hash alike, as JSONPath compares them
    return np.fromiter(found, dtype=np.uint64, count=len(found))


class _ValueIndex:
    """The string and number values of every description, at any depth, by hash (this process's
    ``hash``, under which equal numbers hash alike whatever their type).

    Per description, a small array of the hashes of its values (8 bytes each, ~0.4 KB for a
    typical agent); searched through one sorted array of all of them and the description each
    came from, built when the directory opens and brought up to date when next searched once the
    descriptions changed since are over a fiftieth (until then those are looked at one by one):
    the changed ones' entries are dropped and theirs sorted and merged in, a linear pass (numpy's
    stable sort merges two sorted runs), not a new sort of everything. A hash shared by two
    values only adds a candidate: the query itself decides.
    """

    def __init__(self) -> None:
        self._hashes: dict[str, np.ndarray[Any, np.dtype[np.uint64]]] = {}
        self._sorted: np.ndarray[Any, np.dtype[np.uint64]] = np.empty(0, np.uint64)
        self._owners: np.ndarray[Any, np.dtype[np.int64]] = np.empty(0, np.int64)
        self._owner_ids: list[str] = []
        self._index_of: dict[str, int] = {}
        self._changed: set[str] = set()

    def add(self, thing_id: str, td: Any) -> None:
        self._hashes[thing_id] = _value_hashes(td)
        self._changed.add(thing_id)

    def remove(self, thing_id: str) -> None:
        self._hashes.pop(thing_id, None)
        self._changed.add(thing_id)

    def _range(self, value: Scalar) -> tuple[np.uint64, int, int]:
        if len(self._changed) > max(256, len(self._hashes) // 50):
            self._rebuild()
        key = np.uint64(hash(value) & _MASK)
        low, high = np.searchsorted(self._sorted, key, "left"), np.searchsorted(self._sorted, key, "right")
        return key, int(low), int(high)

    def count(self, value: Scalar) -> int:
        """About how many descriptions hold ``value`` (those changed since the build aside)."""
        _, low, high = self._range(value)
        return high - low

    def containing(self, value: Scalar) -> set[str]:
        key, low, high = self._range(value)
        found = {self._owner_ids[k] for k in self._owners[low:high].tolist()} - self._changed
        for thing_id in self._changed:
            hashes = self._hashes.get(thing_id)
            if hashes is not None and bool((hashes == key).any()):
                found.add(thing_id)
        return found

    def _rebuild(self) -> None:
        """Bring the sorted arrays up to date with the changed descriptions."""
        stale = [self._index_of[i] for i in self._changed if i in self._index_of]
        keep = ~np.isin(self._owners, np.asarray(stale, dtype=np.int64))
        fresh = [i for i in self._changed if i in self._hashes]
        for thing_id in fresh:
            if thing_id not in self._index_of:
                self._index_of[thing_id] = len(self._owner_ids)
                self._owner_ids.append(thing_id)
        arrays = [self._hashes[i] for i in fresh]
        added = np.concatenate(arrays) if arrays else np.empty(0, np.uint64)
        owners = np.repeat(
            np.asarray([self._index_of[i] for i in fresh], dtype=np.int64), [len(a) for a in arrays]
        )
        order = np.argsort(added, kind="stable")
        every = np.concatenate((self._sorted[keep], added[order]))
        owners = np.concatenate((self._owners[keep], owners[order]))
        merged = np.argsort(every, kind="stable")  # two sorted runs: one merge pass
        self._sorted, self._owners = every[merged], owners[merged]
        self._changed = set()

    def build(self) -> None:
        """Make every description searchable through the sorted arrays (at open)."""
        if self._changed:
            self._rebuild()


class FieldIndex:
    """Fields of every stored description, updated from the change feed."""

    def __init__(self) -> None:
        self._columns = {"q": _TextColumn("text"), "title": _TextColumn("title")}
        self._values = _ValueIndex()
        self._entries: dict[str, _Entry] = {}
        self._inverted: dict[str, Postings] = {f: {} for f in EXACT_FIELDS}
        self._top: Postings = {}

    def load(self, records: Iterable[Record]) -> None:
        for record in records:
            self._add(record.id, record.document())
        self._values.build()
        for column in self._columns.values():
            column.rebuild()

    def apply(self, change: Change) -> None:
        self._remove(change.id)
        if change.record is not None:
            self._add(change.id, change.record.document())

    def _add(self, thing_id: str, td: Mapping[str, Any]) -> None:
        self._values.add(thing_id, td)
        entry = extract(td)
        self._entries[thing_id] = entry
        for column in self._columns.values():
            column.add(thing_id, entry)
        for name, values in zip(EXACT_FIELDS, entry.exact, strict=True):
            for value in values:
                _post(self._inverted[name], value, thing_id)
        for pair in entry.top:
            _post(self._top, pair, thing_id)

    def _remove(self, thing_id: str) -> None:
        entry = self._entries.pop(thing_id, None)
        if entry is None:
            return
        for column in self._columns.values():
            column.remove(thing_id, entry)
        self._values.remove(thing_id)
        for name, values in zip(EXACT_FIELDS, entry.exact, strict=True):
            for value in values:
                _unpost(self._inverted[name], value, thing_id)
        for pair in entry.top:
            _unpost(self._top, pair, thing_id)

    def rarest_value(self, values: Iterable[Scalar]) -> Scalar:
        """The one of ``values`` the fewest descriptions hold (the best pre-selection)."""
        return min(values, key=self._values.count)

    def with_value(self, value: Scalar) -> set[str]:
        """Ids of the descriptions holding the string ``value`` anywhere (and, rarely, a few
        more: JSONPath pre-selection on any path)."""
        return self._values.containing(value)

    def with_member(self, key: str, value: str) -> set[str]:
        """Ids whose top-level member ``key`` is the string ``value`` (JSONPath pre-selection)."""
        return _ids(self._top, (key, value))

    # -- filter evaluation -------------------------------------------------------------------
    def search(self, expr: Expr) -> set[str]:
        return self._eval(expr, None)

    def _eval(self, expr: Expr, within: set[str] | None) -> set[str]:
        # Index lookups first: they narrow the set the text predicates then scan.
        parts = sorted(expr.items(), key=lambda kv: kv[0] in TEXT_FIELDS or kv[0] in ("or", "not"))
        result = within
        for key, value in parts:
            result = self._eval_one(key, value, result)
        return result if result is not None else set(self._entries)

    def _eval_one(self, key: str, value: Any, within: set[str] | None) -> set[str]:
        if key == "and":
            for child in value:
                within = self._eval(child, within)
            return within if within is not None else set(self._entries)
        if key == "or":
            found: set[str] = set()
            for child in value:
                found |= self._eval(child, within)
            return found
        if key == "not":
            universe = within if within is not None else set(self._entries)
            return universe - self._eval(value, within)
        values = value if isinstance(value, list) else [value]
        if key in TEXT_FIELDS:
            needles = [[w for w in v.lower().split()] for v in values]
            column = self._columns[key]
            if all(needles) and (within is None or len(within) > 64):  # by the rarest word
                found = set().union(*(column.containing(words) for words in needles))
                candidates: Iterable[str] = found & within if within is not None else found
            else:
                candidates = within if within is not None else self._entries
            return {
                i
                for i in candidates
                if any(all(w in getattr(self._entries[i], column.attr) for w in words) for words in needles)
            }
        index = self._inverted[key]
        found = set()
        for v in values:
            found |= _ids(index, v if key == "id" else v.lower())
        return found & within if within is not None else found

    def sort(self, ids: Iterable[str], keys: list[str]) -> list[str]:
        ordered = sorted(ids)  # id order first: the tie-breaker of every other key
        for key in reversed(keys):
            name = key.lstrip("-")
            if name == "id":
                ordered.sort(reverse=key.startswith("-"))
            else:
                ordered.sort(key=lambda i: getattr(self._entries[i], name), reverse=key.startswith("-"))
        return ordered


def filter_from_query(query: Mapping[str, Any]) -> Expr | None:
    """The filter of a GET request: each parameter one condition (AND), repeated values any-of (OR).

    An unknown parameter is refused (400), as the POST form refuses unknown members: a typo such as
    ``capabilty=`` must not silently widen the answer to every description.
    """
    known = (*EXACT_FIELDS, *TEXT_FIELDS, *_QUERY_OPTIONS)
    unknown = sorted(set(query) - set(known))
    if unknown:
        hints = ", ".join(f"{name!r}{_suggest(name, known)}" for name in unknown)
        raise HTTPProblem(400, f"unknown query parameter {hints}; filter parameters are: {', '.join(known)}")
    expr: dict[str, Any] = {}
    for key in (*EXACT_FIELDS, *TEXT_FIELDS):
        values = query.getall(key, []) if hasattr(query, "getall") else []
        if values:
            expr[key] = values if len(values) > 1 else values[0]
    if "filter" in query:
        try:
            given = loads(query["filter"], max_depth=MAX_DEPTH)
        except JSONLimitError as exc:
            raise HTTPProblem(400, f"filter is not accepted: {exc}") from None
        except json.JSONDecodeError as exc:
            raise HTTPProblem(400, f"filter is not valid JSON: {exc.msg}") from None
        expr = {"and": [expr, given]} if expr else given
    return parse_filter(expr) if expr else None
