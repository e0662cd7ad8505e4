"""SPARQL result formats by content negotiation (the SPARQL 1.1 Protocol the Search API follows).

WoT Discovery 7.3.2.3.3 fixes the *defaults*: ``application/json`` for SELECT/ASK and
``application/ld+json`` for CONSTRUCT/DESCRIBE. A SPARQL 1.1 client asks for its own format with
``Accept``; rdflib's ``SPARQLStore``, for one, asks for the XML results format unless told
otherwise. So the other standard formats are offered too: SPARQL XML, CSV and TSV results, and
Turtle, N-Triples and RDF/XML graphs. An ``Accept`` naming none of them gets the default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import pyoxigraph as ox

from ._json import dumps

__all__ = ["binding", "encode_boolean", "encode_graph", "encode_solutions"]

Binding = Mapping[str, Mapping[str, str]]

_JSON, _SPARQL_JSON = "application/json", "application/sparql-results+json"
_XML, _CSV, _TSV = "application/sparql-results+xml", "text/csv", "text/tab-separated-values"
_TABLES = (_JSON, _SPARQL_JSON, _XML, _CSV, _TSV)
_GRAPHS = {
    "application/ld+json": ox.RdfFormat.JSON_LD,
    "text/turtle": ox.RdfFormat.TURTLE,
    "application/n-triples": ox.RdfFormat.N_TRIPLES,
    "application/rdf+xml": ox.RdfFormat.RDF_XML,
}
_STRING = "http://www.w3.org/2001/XMLSchema#string"


def binding(term: Any) -> dict[str, str]:
    """An Oxigraph term in the SPARQL JSON results form, which the other formats are made from."""
    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": term.value}
    out = {"type": "literal", "value": term.value}
    if term.language:
        out["xml:lang"] = term.language
    elif term.datatype.value != _STRING:
        out["datatype"] = term.datatype.value
    return out


def _choose(accept: str, offered: Sequence[str]) -> str:
    """The offered type the client prefers most (q-values honoured); ``offered[0]`` otherwise."""
    best, best_quality = offered[0], 0.0
    for position, item in enumerate(accept.split(",")):
        media, *params = (part.strip().lower() for part in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media in offered and quality > best_quality:
            best, best_quality = media, quality - position * 1e-6  # ties: the earlier one
    return best


def _xml_term(term: Mapping[str, str]) -> str:
    kind, value = term["type"], escape(term["value"])
    if kind == "uri":
        return f"<uri>{value}</uri>"
    if kind == "bnode":
        return f"<bnode>{value}</bnode>"
    if "xml:lang" in term:
        return f"<literal xml:lang={quoteattr(term['xml:lang'])}>{value}</literal>"
    if "datatype" in term:
        return f"<literal datatype={quoteattr(term['datatype'])}>{value}</literal>"
    return f"<literal>{value}</literal>"


def _tsv_term(term: Mapping[str, str]) -> str:
    """A term in Turtle syntax (SPARQL 1.1 TSV results)."""
    kind, value = term["type"], term["value"]
    if kind == "uri":
        return f"<{value}>"
    if kind == "bnode":
        return f"_:{value}"
    text = str(ox.Literal(value))  # Turtle-escaped, quoted
    if "xml:lang" in term:
        return f"{text}@{term['xml:lang']}"
    if term.get("datatype", _STRING) != _STRING:
        return f"{text}^^<{term['datatype']}>"
    return text


def _csv_field(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"\r\n') else value


def encode_solutions(names: Sequence[str], bindings: Sequence[Binding], accept: str) -> tuple[bytes, str]:
    """SELECT results as JSON (default), SPARQL XML, CSV or TSV, with their content type."""
    media = _choose(accept, _TABLES)
    if media in (_JSON, _SPARQL_JSON):
        return dumps({"head": {"vars": list(names)}, "results": {"bindings": list(bindings)}}), media
    if media == _XML:
        head = "".join(f"<variable name={quoteattr(name)}/>" for name in names)
        rows = "".join(
            "<result>"
            + "".join(
                f"<binding name={quoteattr(name)}>{_xml_term(row[name])}</binding>"
                for name in names
                if name in row
            )
            + "</result>"
            for row in bindings
        )
        return _xml(f"<head>{head}</head><results>{rows}</results>"), media
    if media == _CSV:  # values only: IRIs and literals as plain text, blank nodes as _:label
        lines = [",".join(_csv_field(name) for name in names)]
        for row in bindings:
            cells = []
            for name in names:
                term = row.get(name)
                value = "" if term is None else term["value"]
                cells.append(_csv_field("_:" + value if term and term["type"] == "bnode" else value))
            lines.append(",".join(cells))
        return ("\r\n".join(lines) + "\r\n").encode(), media
    lines = ["\t".join(f"?{name}" for name in names)]
    lines += ["\t".join(_tsv_term(row[name]) if name in row else "" for name in names) for row in bindings]
    return ("\n".join(lines) + "\n").encode(), media


def encode_boolean(value: bool, accept: str) -> tuple[bytes, str]:
    """ASK results as JSON (default) or SPARQL XML (CSV/TSV define no boolean form)."""
    media = _choose(accept, (_JSON, _SPARQL_JSON, _XML))
    if media == _XML:
        return _xml(f"<head/><boolean>{'true' if value else 'false'}</boolean>"), media
    return dumps({"head": {}, "boolean": value}), media


def encode_graph(triples: Iterable[Any], accept: str) -> tuple[bytes, str]:
    """CONSTRUCT/DESCRIBE results as JSON-LD (default), Turtle, N-Triples or RDF/XML."""
    media = _choose(accept, tuple(_GRAPHS))
    body = ox.serialize(list(triples), format=_GRAPHS[media])
    return body or (b"[]" if media == "application/ld+json" else b""), media


def _xml(inner: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<sparql xmlns="http://www.w3.org/2005/sparql-results#">{inner}</sparql>\n'
    ).encode()
