"""JSON-LD -> RDF for many descriptions of the same shape, converting each shape once.

Processing the TD 1.1 context's scoped contexts costs ~2.5 ms per agent description in Oxigraph,
and it depends only on the document's *shape* (its keys, numbers, booleans and the few string
values listed in ``_KEEP``), not on its other string values. So each of those is replaced by a
slot IRI (``urn:x-wot-agents-slot:N``), the skeleton is converted once and cached as an N-Quads
template, and every description of that shape gets its RDF by putting its values back into the
template (blank nodes relabelled per description); Oxigraph then loads the text at native speed.
A value in an IRI position must be an absolute IRI to be put back as is; anything the
substitution cannot reproduce exactly falls back to the full conversion, so the result is
always the RDF of the real document (tests/registry/test_rdf.py checks this on the W3C
examples).
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pyoxigraph as ox

__all__ = ["TemplateConverter"]

SLOT = "urn:x-wot-agents-slot:"
#: Members whose string values shape the RDF (keywords, @vocab-typed terms such as ``op`` and a
#: security ``scheme``) or are usually relative IRIs (``security`` names a securityDefinitions
#: entry, a capability ``version`` is typed @id): kept in the skeleton.
_KEEP = frozenset(
    {"@context", "@type", "type", "op", "unit", "scheme", "in", "security", "version"}
    | {"@language", "@direction", "@vocab", "@base", "@id"}
)
_ABSOLUTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.\-]*://|urn:)[^\x00-\x20<>\"{}|\\^`]*$")


def skeleton(document: Any, values: list[str]) -> Any:
    """``document`` with its string values replaced by slots (collected in ``values``)."""
    if isinstance(document, dict):
        return {k: (v if k in _KEEP else skeleton(v, values)) for k, v in document.items()}
    if isinstance(document, list):
        return [skeleton(item, values) for item in document]
    if isinstance(document, str):
        values.append(document)
        return f"{SLOT}{len(values) - 1}"
    return document


# A template: N-Quads text pieces, and holes for values, blank nodes and the graph name.
_IRI, _LITERAL, _BLANK, _GRAPH = range(4)
Piece = str | tuple[int, Any, str]


class TemplateConverter:
    """Caches the N-Quads templates of up to ``size`` shapes; ``convert`` is the full conversion."""

    def __init__(self, convert: Callable[[dict[str, Any]], list[ox.Quad]], *, size: int = 4096) -> None:
        self._convert = convert
        self._cache: OrderedDict[str, list[Piece] | None] = OrderedDict()
        self.size = size
        self.hits = 0
        self.misses = 0
        self.fallbacks = 0

    def nquads(self, document: dict[str, Any], graph: str, tag: str) -> str:
        """The RDF of ``document`` as N-Quads in named graph ``graph`` (an absolute IRI).

        ``tag`` makes the blank node labels unique among the documents loaded together.
        Raises what the full conversion raises for a document that is not valid JSON-LD.
        """
        values: list[str] = []
        shape = skeleton(document, values)
        key = json.dumps(shape, sort_keys=True, separators=(",", ":"))
        if key in self._cache:
            self.hits += 1
            self._cache.move_to_end(key)
            template = self._cache[key]
        else:
            self.misses += 1
            template = self._cache[key] = _template(self._convert(shape))
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        text = _fill(template, values, graph, tag) if template is not None else None
        if text is None:
            self.fallbacks += 1
            text = "".join(
                f"{q.subject} {q.predicate} {q.object} <{graph}> .\n" for q in self._convert(document)
            )
        return text


def _template(quads: list[ox.Quad]) -> list[Piece] | None:
    pieces: list[Piece] = []

    def term(t: Any) -> Piece:
        if isinstance(t, ox.NamedNode) and t.value.startswith(SLOT):
            return (_IRI, int(t.value[len(SLOT) :]), "")
        if isinstance(t, ox.BlankNode):
            return (_BLANK, t.value, "")
        if isinstance(t, ox.Literal) and SLOT in t.value:
            index = t.value[len(SLOT) :] if t.value.startswith(SLOT) else ""
            if not index.isdigit():
                raise _Mismatch  # a slot inside a bigger literal (e.g. an rdf:JSON value)
            text = str(t)
            return (_LITERAL, int(index), text[text.rindex('"') + 1 :])  # keeps @lang or ^^<datatype>
        return str(t)

    try:
        for q in quads:
            pieces += [term(q.subject), " ", term(q.predicate), " ", term(q.object), (_GRAPH, None, "")]
    except _Mismatch:
        return None
    return pieces


def _fill(template: list[Piece], values: list[str], graph: str, tag: str) -> str | None:
    out = []
    end = f" <{graph}> .\n"
    for piece in template:
        if isinstance(piece, str):
            out.append(piece)
            continue
        kind, key, suffix = piece
        if kind == _LITERAL:
            out.append(json.dumps(values[key], ensure_ascii=False) + suffix)
        elif kind == _IRI:
            value = values[key]
            if not _ABSOLUTE.match(value):
                return None  # a relative or compact IRI: only the full conversion resolves it
            out.append(f"<{value}>")
        elif kind == _BLANK:
            out.append(f"_:{key}{tag}")
        else:
            out.append(end)
    text = "".join(out)
    try:
        text.encode()
    except UnicodeEncodeError:
        return None  # lone surrogates: let the full conversion report it
    return text


class _Mismatch(Exception):
    pass
