"""JSON-LD processing of descriptions, offline.

pyld fetches remote contexts by default; here a :class:`ContextLoader` serves the known contexts
(TD 1.0, TD 1.1, WoT Discovery, LMOS) from the ``td_schemas`` files and refuses anything else
with a :class:`JsonLdError` at once, so processing never touches the network and never hangs.
Other contexts can be added explicitly with :meth:`ContextLoader.add`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyld import jsonld

import td_schemas

from ._errors import JsonLdError

__all__ = ["ContextLoader", "compact", "expand", "to_graph", "to_nquads"]


def _normalise(url: str) -> str:
    # http and https, and a trailing '#', name the same context in the wild.
    url = url.strip().removesuffix("#")
    return "https://" + url.removeprefix("http://") if url.startswith("http://") else url


class ContextLoader:
    """A pyld document loader over files; it never opens a connection.

    Parsed contexts are shared between calls: pyld treats loaded documents as read-only.
    """

    def __init__(self, contexts: Mapping[str, Any] | None = None) -> None:
        self._documents: dict[str, Any] = {}
        for url, name in td_schemas.CONTEXT_FILES.items():
            self._documents[_normalise(url)] = td_schemas.load(name)
        for url, document in (contexts or {}).items():
            self.add(url, document)

    def add(self, url: str, document: Any) -> None:
        """Serve ``document`` (a parsed context document, ``{"@context": ...}``) for ``url``."""
        self._documents[_normalise(url)] = document

    def __contains__(self, url: object) -> bool:
        return isinstance(url, str) and _normalise(url) in self._documents

    def __call__(self, url: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
        try:
            document = self._documents[_normalise(url)]
        except KeyError:
            raise JsonLdError(
                f"JSON-LD context {url!r} is not known offline and is never fetched; "
                "add it with ContextLoader.add(url, document)"
            ) from None
        return {
            "contentType": "application/ld+json",
            "contextUrl": None,
            "documentUrl": url,
            "document": document,
        }


_default_loader = ContextLoader()


def _options(loader: ContextLoader | None, base: str | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {"documentLoader": loader or _default_loader}
    if base is not None:
        options["base"] = base
    return options


def _run(operation: str, call: Any) -> Any:
    try:
        return call()
    except JsonLdError:
        raise
    except jsonld.JsonLdError as exc:
        cause = exc
        # pyld wraps the loader's error in several layers; surface ours when it is the cause.
        while cause is not None:
            if isinstance(cause, JsonLdError):
                raise cause from None
            cause = getattr(cause, "cause", None) or cause.__cause__
        raise JsonLdError(f"JSON-LD {operation} failed: {exc}") from None


def expand(document: Mapping[str, Any], *, loader: ContextLoader | None = None) -> list[Any]:
    """The expanded form of a description (every term an IRI)."""
    return _run("expansion", lambda: jsonld.expand(dict(document), _options(loader)))  # type: ignore[no-any-return]


def compact(
    document: Mapping[str, Any] | list[Any], context: Any, *, loader: ContextLoader | None = None
) -> dict[str, Any]:
    """Compact an (expanded or compacted) document against ``context``."""
    return _run("compaction", lambda: jsonld.compact(document, context, _options(loader)))  # type: ignore[no-any-return]


def to_nquads(document: Mapping[str, Any], *, loader: ContextLoader | None = None) -> str:
    """The RDF of a description as N-Quads text (blank nodes labelled ``_:b0``...)."""
    options = _options(loader) | {"format": "application/n-quads"}
    return _run("conversion to RDF", lambda: jsonld.to_rdf(dict(document), options))  # type: ignore[no-any-return]


def to_graph(document: Mapping[str, Any], *, loader: ContextLoader | None = None) -> Any:
    """The RDF of a description as an ``rdflib.Graph``.

    A description has no named graphs of its own, so its N-Quads are N-Triples.
    """
    from rdflib import Graph

    graph = Graph()
    graph.parse(data=to_nquads(document, loader=loader), format="nt")
    return graph
