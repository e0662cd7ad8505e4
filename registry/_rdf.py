"""The RDF index behind ``/search/sparql``: one named graph per description, in Oxigraph.

Engine choice (measured, see bench/directory.py and the commit): pyoxigraph answers a selective
query over 1k descriptions in well under a millisecond; rdflib needs tens of milliseconds for the
same query and several times the memory. The expensive part is JSON-LD -> RDF (a few ms per TD,
mostly processing the TD 1.1 context's scoped contexts), so it is kept off the write path: writes
only mark a description as pending, a background task converts pending descriptions in batches
when writes pause (each document *shape* converted once, see ``_templates.py``), and every SPARQL
query first waits until nothing is pending. Reads stay consistent with acknowledged writes;
registration stays fast.

With a database path the Oxigraph store lives on disk next to it, so a restart does not convert
anything again; the store's ``rdf_pending`` table re-converts whatever a crash left undone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import itertools
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyoxigraph as ox

import td_schemas

from ._problems import HTTPProblem
from ._store import Change, SQLiteStore
from ._templates import TemplateConverter

__all__ = ["RdfIndex"]

logger = logging.getLogger("registry.rdf")
_BATCH = 64
_FLUSH_EVERY = 2000
#: Conversion waits for this long a pause in writes (or for a query), so bursts of writes are not slowed.
_QUIET = 0.2


def _known_contexts() -> dict[str, Any]:
    contexts: dict[str, Any] = {}
    for url, name in td_schemas.CONTEXT_FILES.items():
        contexts[url] = td_schemas.load(name)["@context"]
        contexts[url.replace("https://", "http://")] = contexts[url]
    return contexts


try:
    _libc: Any = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _libc.malloc_trim  # noqa: B018 (glibc only)
except (OSError, AttributeError):
    _libc = None

_SERVICE = re.compile(r"\bSERVICE\b", re.IGNORECASE)
_UPDATE = re.compile(
    r"^\s*(?:(?:PREFIX|BASE)\s[^\n]*\s*)*(INSERT|DELETE|LOAD|CLEAR|CREATE|DROP|COPY|MOVE|ADD|WITH)\b",
    re.IGNORECASE,
)


class RdfIndex:
    """Pending conversions, the background converter, and SPARQL evaluation with limits."""

    def __init__(
        self,
        store: SQLiteStore,
        path: Path | None,
        *,
        query_timeout: float = 5.0,
        result_cap: int = 10_000,
        allow_federation: bool = False,
    ) -> None:
        self.store = store
        self.oxigraph = ox.Store(str(path)) if path is not None else ox.Store()
        self.query_timeout = query_timeout
        self.result_cap = result_cap
        self.allow_federation = allow_federation
        self._contexts = _known_contexts()
        self._templates = TemplateConverter(self._convert)
        self._pending: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._last_write = 0.0
        self._urgent = False
        self._flushed = 0
        self.converted = 0
        self.failed = 0
        store.subscribe(self.apply)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        for thing_id in await self.store.rdf_pending():
            self._pending.setdefault(thing_id, 0)
        self._task = asyncio.create_task(self._run(), name="wot-directory-rdf")
        self._kick()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            self.oxigraph.flush()

    def apply(self, change: Change) -> None:
        self._pending[change.id] = change.seq
        self._last_write = time.monotonic()
        self._kick()

    def _kick(self) -> None:
        if self._pending:
            self._idle.clear()
            self._wake.set()

    async def sync(self) -> None:
        """Wait until every acknowledged write is in the RDF index."""
        self._urgent = True
        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Conversion holds the GIL: run it in pauses between writes, or at once for a query.
            while not self._urgent and time.monotonic() - self._last_write < _QUIET:  # noqa: ASYNC110
                await asyncio.sleep(_QUIET / 4)
            while self._pending:
                batch = dict(itertools.islice(self._pending.items(), _BATCH))
                for thing_id in batch:
                    del self._pending[thing_id]
                docs = {}
                for thing_id in batch:
                    record = self.store.get(thing_id)
                    if record is not None:
                        docs[thing_id] = record.document()
                try:
                    await asyncio.to_thread(self._index, list(batch), docs)
                    await self.store.rdf_done(batch.items())
                except Exception:
                    logger.exception("RDF indexing of %d descriptions failed", len(batch))
                if self.converted - self._flushed >= _FLUSH_EVERY:
                    self._flushed = self.converted
                    await asyncio.to_thread(self._release_memory)
                await asyncio.sleep(0)  # let queries and writes through between batches
            self._urgent = False
            self._idle.set()

    def _release_memory(self) -> None:
        # An on-disk Oxigraph (RocksDB) keeps writes in memtables until a flush, and glibc keeps
        # what was freed; at 10k descriptions that is ~700 MB of RSS, most of it given back here.
        self.oxigraph.flush()
        if _libc is not None:
            _libc.malloc_trim(0)

    # -- JSON-LD -> RDF ----------------------------------------------------------------------
    def _convert(self, document: dict[str, Any]) -> list[ox.Quad]:
        """The full JSON-LD -> RDF conversion, the known contexts inlined (nothing is fetched)."""
        context = document.get("@context")
        node = dict(document)
        node["@context"] = [
            self._contexts[entry] if isinstance(entry, str) and entry in self._contexts else entry
            for entry in (context if isinstance(context, list) else [context])
        ]
        unknown = [entry for entry in node["@context"] if isinstance(entry, str)]
        if unknown:
            raise ValueError(f"JSON-LD context {unknown[0]!r} is not known offline")
        return list(ox.parse(json.dumps(node), format=ox.RdfFormat.JSON_LD, base_iri="urn:x-relative:"))

    def _nquads(self, docs: dict[str, dict[str, Any]]) -> str:
        parts = []
        for n, (thing_id, td) in enumerate(docs.items()):
            try:
                ox.NamedNode(thing_id)  # the graph name must be an IRI
                parts.append(self._templates.nquads(td, thing_id, f"x{n}"))
            except (SyntaxError, ValueError) as exc:
                self.failed += 1
                logger.warning("%s is not in the SPARQL index: %s", thing_id, exc)
        return "".join(parts)

    def _index(self, ids: list[str], docs: dict[str, dict[str, Any]]) -> None:
        text = self._nquads(docs)
        for thing_id in ids:
            if self._has_graph(thing_id):
                self.oxigraph.remove_graph(ox.NamedNode(thing_id))
        if text:
            self.oxigraph.load(text, format=ox.RdfFormat.N_QUADS)
        self.converted += len(docs)

    def _has_graph(self, thing_id: str) -> bool:
        try:
            return self.oxigraph.contains_named_graph(ox.NamedNode(thing_id))
        except ValueError:
            return False

    # -- SPARQL ------------------------------------------------------------------------------
    async def query(self, text: str, accept: str) -> tuple[bytes, str]:
        """Run a query (SELECT/ASK/CONSTRUCT/DESCRIBE) within the time limit and result cap."""
        if _UPDATE.match(text):
            raise HTTPProblem(
                400, "SPARQL updates are not accepted; only SELECT, ASK, CONSTRUCT and DESCRIBE"
            )
        if not self.allow_federation and _SERVICE.search(text):
            raise HTTPProblem(400, "SPARQL federation (SERVICE) is disabled in this directory")
        await self.sync()
        deadline = time.monotonic() + self.query_timeout
        task = asyncio.to_thread(self._evaluate, text, accept, deadline)
        try:
            return await asyncio.wait_for(task, self.query_timeout + 0.5)
        except TimeoutError:
            raise self._too_slow() from None

    def _too_slow(self) -> HTTPProblem:
        return HTTPProblem(
            400, f"the query ran longer than the limit of {self.query_timeout:g} s; make it more selective"
        )

    def _evaluate(self, text: str, accept: str, deadline: float) -> tuple[bytes, str]:
        # Oxigraph's result objects must die on the thread that made them: never let one escape
        # in an exception (its traceback would carry it to the event loop's thread).
        try:
            result = self.oxigraph.query(text, use_default_graph_as_union=True)
        except SyntaxError as exc:
            raise HTTPProblem(400, f"not a valid SPARQL query: {exc}") from None
        if isinstance(result, ox.QueryBoolean):
            return _json({"head": {}, "boolean": bool(result)}), _results_type(accept)
        if isinstance(result, ox.QuerySolutions):
            names = [v.value for v in result.variables]
            bindings = [
                {name: _term(term) for name in names if (term := solution[name]) is not None}
                for solution in self._capped(result, deadline)
            ]
            del result
            problem = self._problem(len(bindings), deadline)
            if problem:
                raise problem
            return _json({"head": {"vars": names}, "results": {"bindings": bindings}}), _results_type(accept)
        triples = list(self._capped(result, deadline))
        del result
        problem = self._problem(len(triples), deadline)
        if problem:
            raise problem
        return ox.serialize(triples, format=ox.RdfFormat.JSON_LD) or b"[]", "application/ld+json"

    def _capped(self, results: Iterable[Any], deadline: float) -> Iterator[Any]:
        """Results up to one past the cap, stopping early at the deadline."""
        for count, item in enumerate(results):
            yield item
            if count >= self.result_cap or (count % 256 == 0 and time.monotonic() > deadline):
                return

    def _problem(self, count: int, deadline: float) -> HTTPProblem | None:
        if count > self.result_cap:
            return HTTPProblem(
                400, f"the query has more than {self.result_cap} results; add a LIMIT or narrow it"
            )
        if time.monotonic() > deadline:
            return self._too_slow()
        return None


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _results_type(accept: str) -> str:
    # application/json by default (7.3.2.3.3); the SPARQL media type when asked for it.
    return (
        "application/sparql-results+json"
        if "application/sparql-results+json" in accept
        else "application/json"
    )


def _term(term: Any) -> dict[str, str]:
    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": term.value}
    out = {"type": "literal", "value": term.value}
    if term.language:
        out["xml:lang"] = term.language
    elif term.datatype.value != "http://www.w3.org/2001/XMLSchema#string":
        out["datatype"] = term.datatype.value
    return out
