"""The SPARQL index's own process: JSON-LD -> RDF, the Oxigraph store, and SPARQL evaluation.

Converting a description and writing its ~90 quads into the on-disk Oxigraph store costs
0.8-2 ms of CPU (the write into RocksDB is most of it, and it contends for the GIL). In the
server process that CPU competed with every request; here it runs on another core. The process
owns the Oxigraph store; the server (:class:`registry._rdf.RdfIndex`) sends it the committed
changes and the queries over two pipes and never touches the store itself.

Messages, server -> worker: ``("index", [(id, seq, stored JSON or None), ...])`` in commit
order, ``("flush",)`` when a query waits for them, ``("query", qid, text, accept, timeout, union)``
(``union``: the default graph is the union of the named graphs; False when the query names its
dataset with FROM).
Worker -> server: ``("indexed", seq, done, failures)`` once every change up to ``seq`` is in the
store (``done``: the ``(id, seq)`` pairs whose pending mark may be dropped; ``failures``:
``(id, reason)`` of descriptions left out), and ``("answer", qid, body, content_type)`` or
``("problem", qid, detail)``. End of input (the server closed its end, or died: nothing else
holds that pipe) ends the worker after the batch at hand, without waiting for running queries,
so no process outlives the server. SIGINT and SIGTERM, which a terminal or a supervisor send to
the whole process group, are the server's to act on: it then stops the worker through the pipe.

One description never costs the others their place in the index: each is converted on its own
(one that cannot be is reported and left out), deeper ones than the directory accepts are not
even tried (an old database may hold some), and a batch the store refuses is loaded again
description by description.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import queue
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

import pyoxigraph as ox

import td_schemas

from ._json import MAX_DEPTH, depth
from ._sparql_results import binding, encode_boolean, encode_graph, encode_solutions
from ._templates import TemplateConverter

__all__ = ["Indexer", "serve"]

#: Most changes converted and written together.
_BATCH = 1024
#: From this many changes on, a batch is written with Oxigraph's bulk loader: 0.78 ms of CPU per
#: bench agent against 2.15 ms for a transactional load (batches of 1024, on disk). It is not
#: atomic, which costs little here: a crash leaves the batch pending, to be loaded again, and a
#: query waits until the batches with the writes acknowledged before it are loaded (it may see
#: part of a batch of newer writes).
_BULK = 256
#: Seconds without new changes after which the gathered ones are indexed.
_QUIET = 0.05
#: The index is background work: the server's requests (and its clients on the same machine)
#: come first when the cores are contended. At +19 it runs on the CPU they leave idle; at +5 it
#: still took enough to cut 100k registrations from ~1270/s to ~900-980/s (bench/directory.py).
_NICE = 19
#: RocksDB memtables are flushed, and freed memory returned, every this many conversions.
_FLUSH_EVERY = 2000

try:
    _libc: Any = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _libc.malloc_trim  # noqa: B018 (glibc only)
except (OSError, AttributeError):
    _libc = None


def _known_contexts() -> dict[str, Any]:
    contexts: dict[str, Any] = {}
    for url, name in td_schemas.CONTEXT_FILES.items():
        contexts[url] = td_schemas.load(name)["@context"]
        contexts[url.replace("https://", "http://")] = contexts[url]
    return contexts


class Indexer:
    """One named graph per description in ``store``, converted through the shape templates."""

    def __init__(self, store: ox.Store) -> None:
        self.store = store
        self._contexts = _known_contexts()
        self.templates = TemplateConverter(self.convert)
        self.converted = 0
        self._flushed = 0

    def convert(self, document: dict[str, Any]) -> list[ox.Quad]:
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

    def index(self, changes: Iterable[tuple[str, bytes | None]]) -> list[tuple[str, str]]:
        """Replace the graphs of ``changes`` (None: remove it); returns ``(id, reason)`` left out."""
        latest = dict(changes)  # a later change of the same description wins
        failures: list[tuple[str, str]] = []
        parts: list[tuple[str, str]] = []
        for n, (thing_id, data) in enumerate(latest.items()):
            if data is None:
                continue
            try:
                ox.NamedNode(thing_id)  # the graph name must be an IRI
                document = json.loads(data)
                if depth(document, MAX_DEPTH) > MAX_DEPTH:
                    raise ValueError(f"it nests deeper than {MAX_DEPTH} levels")
                # Every description is a td:Thing too (agents are typed only lmos:Agent otherwise),
                # so `?s a td:Thing` finds agents and things alike.
                typed = f"<{thing_id}> <{_RDF_TYPE}> <{_TD_THING}> <{thing_id}> .\n"
                parts.append((thing_id, self.templates.nquads(document, thing_id, f"x{n}") + typed))
            except Exception as exc:  # this description only (RecursionError included)
                failures.append((thing_id, f"{type(exc).__name__}: {exc}"))
        for thing_id in latest:
            if self._has_graph(thing_id):
                self.store.remove_graph(ox.NamedNode(thing_id))
        if parts:
            load = self.store.bulk_load if len(latest) >= _BULK else self.store.load
            try:
                load("".join(text for _, text in parts), format=ox.RdfFormat.N_QUADS)
            except Exception:  # one bad description: the others are loaded without it
                for thing_id, text in parts:
                    try:
                        self.store.remove_graph(ox.NamedNode(thing_id))
                        self.store.load(text, format=ox.RdfFormat.N_QUADS)
                    except Exception as exc:
                        failures.append((thing_id, f"{type(exc).__name__}: {exc}"))
        self.converted += len(latest)
        if self.converted - self._flushed >= _FLUSH_EVERY:
            self._flushed = self.converted
            self.release_memory()
        return failures

    def release_memory(self) -> None:
        # An on-disk Oxigraph (RocksDB) keeps writes in memtables until a flush, and glibc keeps
        # what was freed; at 10k descriptions that is ~700 MB of RSS, most of it given back here.
        self.store.flush()
        if _libc is not None:
            _libc.malloc_trim(0)

    def _has_graph(self, thing_id: str) -> bool:
        try:
            return self.store.contains_named_graph(ox.NamedNode(thing_id))
        except ValueError:
            return False


# -- SPARQL ---------------------------------------------------------------------------------------
#: Prefixes every query may use without declaring them: the TD vocabularies, and ``lmos:`` bound to
#: what Agent Descriptions really expand to. Their context maps ``lmos`` to an IRI that ends in
#: neither ``/`` nor ``#``, so JSON-LD 1.1 does not use it as a prefix and ``lmos:capabilities``
#: stays the absolute IRI ``<lmos:capabilities>``; binding ``lmos:`` to ``lmos:`` makes
#: ``?a a lmos:Agent`` match as written. A query's own PREFIX declarations win.
SPARQL_PREFIXES: dict[str, str] = {
    "td": "https://www.w3.org/2019/wot/td#",
    "hctl": "https://www.w3.org/2019/wot/hypermedia#",
    "wotsec": "https://www.w3.org/2019/wot/security#",
    "jsonschema": "https://www.w3.org/2019/wot/json-schema#",
    "tm": "https://www.w3.org/2019/wot/tm#",
    "discovery": "https://www.w3.org/2022/wot/discovery-ontology#",
    "dct": "http://purl.org/dc/terms/",
    "htv": "http://www.w3.org/2011/http#",
    "mqv": "http://www.w3.org/2018/wot/mqtt#",
    "lmos": "lmos:",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}
_RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
_TD_THING = "https://www.w3.org/2019/wot/td#Thing"


class QueryProblem(Exception):
    """A query the directory answers with 400; the message says why."""


def readable_syntax_error(text: str, message: str) -> str:
    """Oxigraph's parse error in a sentence: an unknown prefix by name, other errors without the
    Unicode character classes the parser lists as "expected"."""
    match = re.match(r"error at (\d+):(\d+): (.*)", message, re.S)
    if match is None:
        return f"not a valid SPARQL query: {message}"
    line, column, detail = int(match[1]), int(match[2]), match[3]
    where = f"line {line}, column {column}"
    if "Prefix not found" in detail:
        lines = text.splitlines() or [""]
        before = lines[min(line, len(lines)) - 1][: max(column - 1, 0)]
        name = re.search(r"([A-Za-z][\w.-]*)?:[\w.-]*$", before)
        prefix = (name[1] or "") if name else "?"
        known = ", ".join(SPARQL_PREFIXES)
        return (
            f"unknown prefix '{prefix}:' at {where}; declare it with PREFIX {prefix}: <...> "
            f"(predeclared: {known})"
        )
    brief = re.sub(r",?\s*\[[^\]]*\]", "", detail.replace("\n", " ")).strip(" ,")
    return f"not a valid SPARQL query at {where}: {brief or detail}"


def evaluate(
    store: ox.Store, text: str, accept: str, timeout: float, result_cap: int, union: bool = True
) -> tuple[bytes, str]:
    """SELECT/ASK -> SPARQL JSON results, CONSTRUCT/DESCRIBE -> JSON-LD (other formats by
    ``accept``: :mod:`._sparql_results`), within the limits."""
    deadline = time.monotonic() + timeout
    try:
        result = store.query(text, use_default_graph_as_union=union, prefixes=SPARQL_PREFIXES)
    except SyntaxError as exc:
        raise QueryProblem(readable_syntax_error(text, str(exc))) from None
    if isinstance(result, ox.QueryBoolean):
        return encode_boolean(bool(result), accept)
    if isinstance(result, ox.QuerySolutions):
        names = [v.value for v in result.variables]
        bindings = [
            {name: binding(term) for name in names if (term := solution[name]) is not None}
            for solution in _capped(result, deadline, result_cap)
        ]
        _check(len(bindings), deadline, timeout, result_cap)
        return encode_solutions(names, bindings, accept)
    triples = list(_capped(result, deadline, result_cap))
    _check(len(triples), deadline, timeout, result_cap)
    return encode_graph(triples, accept)


def too_slow(timeout: float) -> str:
    return f"the query ran longer than the limit of {timeout:g} s; make it more selective"


def _capped(results: Iterable[Any], deadline: float, cap: int) -> Iterator[Any]:
    """Results up to one past the cap, stopping early at the deadline."""
    for count, item in enumerate(results):
        yield item
        if count >= cap or (count % 256 == 0 and time.monotonic() > deadline):
            return


def _check(count: int, deadline: float, timeout: float, cap: int) -> None:
    if count > cap:
        raise QueryProblem(f"the query has more than {cap} results; add a LIMIT or narrow it")
    if time.monotonic() > deadline:
        raise QueryProblem(too_slow(timeout))


# -- the process ----------------------------------------------------------------------------------
def serve(tasks: Connection, results: Connection, path: str | None, result_cap: int) -> None:
    """The worker process's main: index what arrives, answer queries, until ``tasks`` ends."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # sent to the whole group: the server decides
        signal.signal(signum, signal.SIG_IGN)
    sys.setswitchinterval(0.001)  # a query thread waits less for the GIL held by the converter
    os.nice(_NICE)
    store = ox.Store(path) if path is not None else ox.Store()
    indexer = Indexer(store)
    lock = threading.Lock()
    work: queue.SimpleQueue[list[tuple[str, int, bytes | None]] | None] = queue.SimpleQueue()

    def send(message: tuple[Any, ...]) -> None:
        with lock, contextlib.suppress(OSError):  # the server is gone: the input ends too
            results.send(message)

    def answer(qid: int, text: str, accept: str, timeout: float, union: bool) -> None:
        try:
            body, content_type = evaluate(store, text, accept, timeout, result_cap, union)
            send(("answer", qid, body, content_type))
        except QueryProblem as exc:
            send(("problem", qid, str(exc)))
        except Exception as exc:  # an answer is owed whatever happened
            send(("problem", qid, f"the query failed: {exc}"))

    # Queries run on their own threads, so they are not queued behind a batch being indexed.
    queries = ThreadPoolExecutor(max_workers=2, thread_name_prefix="wot-directory-sparql")

    def read() -> None:
        try:
            while True:
                message = tasks.recv()
                if message[0] == "query":
                    queries.submit(answer, *message[1:])
                else:
                    work.put(message[1] if message[0] == "index" else [])  # flush: an empty batch
        except (EOFError, OSError):
            pass
        finally:
            work.put(None)

    reader = threading.Thread(target=read, name="wot-directory-rdf-reader", daemon=True)
    reader.start()
    batch: list[tuple[str, int, bytes | None]] = []
    running = True
    while running:
        # Changes gather until the input pauses, a query asks for them (flush) or the batch is
        # full: bigger batches cost less CPU per description (the bulk loader).
        try:
            more = work.get(timeout=_QUIET if batch else None)
        except queue.Empty:
            more = []
        if more is None:
            running = False
        elif more:
            batch += more
            if len(batch) < _BATCH:
                continue
        if not batch:
            continue
        try:
            failures = indexer.index((thing_id, data) for thing_id, _, data in batch)
        except Exception:  # the store failed (not a description): a new process retries the batch
            traceback.print_exc()
            os._exit(3)
        send(("indexed", max(seq for _, seq, _ in batch), [(i, seq) for i, seq, _ in batch], failures))
        batch = []
    # The input ended: the server stopped us or died. A running query may take long (the server
    # replaces a process whose query overruns, not one it has stopped): it is not waited for.
    queries.shutdown(wait=False, cancel_futures=True)
    store.flush()
    os._exit(0)
