"""The RDF index behind ``/search/sparql``: one named graph per description, in its own process.

Engine choice (measured, see bench/sparql_engines.py): pyoxigraph answers a selective query over
1k descriptions in well under a millisecond; rdflib needs tens of milliseconds for the same query
and several times the memory. Indexing is the expensive part (0.5-2 ms of CPU per description:
the JSON-LD -> RDF conversion, see ``_templates.py``, and the write into the on-disk store), so it
runs in a worker process on the other core (``_rdf_worker.py``), fed with every committed
change, and the server's event loop only forwards changes and queries.

Consistency: a SPARQL query sees every write acknowledged before it arrived. It waits until the
worker has indexed everything up to the store's sequence number at its arrival; if that takes
longer than the query time limit (a bulk load still being indexed), the answer is 503 with
``Retry-After`` and how many descriptions are still to index. The query's own evaluation then
has the whole time limit (so at most twice the limit in all).

Durability: the store's backlog (``IndexBacklog``) marks every write as pending (SQLite: in the
write's transaction) and forgets the mark only once the worker has indexed it, so nothing is
lost if the worker or the server dies: a restarted worker gets the pending descriptions again.
With a durable backlog (``rdf_path``) the Oxigraph store lives on disk next to it, so a restart
converts only what was pending. An in-memory index loses everything with its process, so its
restart is given every description again; until a restarted index has indexed what it was
given, queries wait (and get the 503), rather than see an index that lost data as if it were
complete.

Availability: Oxigraph cannot stop a query mid-evaluation, so a query that overruns its time
limit has its process killed and replaced (the on-disk index reopens in milliseconds; an
in-memory one is rebuilt). Queries nesting deeper than :data:`MAX_NESTING` (the engine's
recursive parser and evaluator overflow its stack around 3000) are refused before they reach
it. A process that ends by itself is restarted with exponential backoff, for as long as the
directory runs. The process ends with the server, even a killed one (see ``_rdf_worker.py``).

Federation (SPARQL 1.1 ``SERVICE``, a MAY of WoT Discovery 7.3.2.3.3) is off unless endpoints
are allowed: only those, named by IRI (not by variable), so the directory cannot be turned
against hosts its operator did not choose; the time limit covers the remote calls too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import re
import threading
import time
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from queue import SimpleQueue
from typing import Any

from ._backend import Change, DocumentStore, IndexBacklog
from ._problems import HTTPProblem
from ._rdf_worker import serve, too_slow

__all__ = ["MAX_NESTING", "QueryShape", "RdfIndex", "query_shape"]

logger = logging.getLogger("registry.rdf")

_UPDATE = re.compile(
    r"^\s*(?:(?:PREFIX|BASE)\s[^\n]*\s*)*(INSERT|DELETE|LOAD|CLEAR|CREATE|DROP|COPY|MOVE|ADD|WITH)\b",
    re.IGNORECASE,
)

#: Deepest nesting of groups, brackets and parentheses a query may have.
MAX_NESTING = 100
#: Longest query text (characters); SPARQL queries are small, this bounds the scan below.
MAX_QUERY = 100_000
#: Backoff between restarts of a process that ended by itself: first and longest delay (s).
_BACKOFF = (0.2, 30.0)
#: A process that ran this long (s) before it ended starts the backoff from the beginning.
_HEALTHY = 30.0
#: Seconds past the time limit the process has to answer before it is replaced.
_GRACE = 0.5
#: Seconds the store's pending marks of indexed descriptions wait to be dropped together.
_FORGET_DELAY = 1.0
#: A forkserver starts each worker as a fork of a small clean process that has already imported
#: the worker's modules: milliseconds, where a spawned interpreter takes most of a second, and
#: without forking the server's threads.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["registry._rdf_forkserver"])


# -- the query text ------------------------------------------------------------------------------
# SPARQL tokens that matter here; strings, IRIs and comments are matched whole, so that what they
# contain is neither counted nor taken for a keyword.
_TOKENS = re.compile(
    "|".join(
        (
            r"#[^\n]*",  # a comment
            r"'''(?:[^'\\]|\\.|'(?!''))*'''",  # long strings
            r'"""(?:[^"\\]|\\.|"(?!""))*"""',
            r"'(?:[^'\\\n]|\\.)*'",  # strings
            r'"(?:[^"\\\n]|\\.)*"',
            r'<[^<>"{}|^`\\\x00-\x20]*>',  # an IRI (a lone < is an operator)
            r"[?$][\w\u0080-\uffff]+",  # a variable
            r"[A-Za-z_:\u0080-\uffff][\w.:\-\u0080-\uffff]*",  # a keyword or prefixed name
            r"[{}()\[\]]",
        )
    ),
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class QueryShape:
    """What the gate needs to know of a query, read outside strings, IRIs and comments."""

    nesting: int  # deepest nesting of {}, () and []
    dataset: bool  # a FROM or FROM NAMED clause: the query chooses its graphs
    services: tuple[str, ...]  # the endpoint of each SERVICE (``?var`` for a variable)


def query_shape(text: str) -> QueryShape:
    depth = deepest = 0
    dataset = False
    services: list[str] = []
    after_service = False
    for match in _TOKENS.finditer(text):
        token = match.group()
        first = token[0]
        if first in "{([":
            depth += 1
            deepest = max(deepest, depth)
        elif first in "})]":
            depth = max(0, depth - 1)
        elif first == "#":
            continue
        upper = token.upper()
        if after_service and upper != "SILENT":
            services.append(token[1:-1] if first == "<" else token)
            after_service = False
        elif upper == "SERVICE":
            after_service = True
        elif upper == "FROM":
            dataset = True
    if after_service:
        services.append("")
    return QueryShape(deepest, dataset, tuple(services))


class RdfIndex:
    """Feeds the worker process, tracks what it has indexed, and forwards queries to it."""

    def __init__(
        self,
        documents: DocumentStore,
        todo: IndexBacklog,
        *,
        query_timeout: float = 5.0,
        result_cap: int = 10_000,
        services: Collection[str] = (),
    ) -> None:
        self.documents = documents
        self.todo = todo
        self.path: Path | None = todo.rdf_path
        self.query_timeout = query_timeout
        self.result_cap = result_cap
        self.services = frozenset(services)
        self._pending: dict[str, int] = {}  # sent, not yet indexed: id -> seq of its latest change
        self._reindexing: set[str] = set()  # given again to a restarted process, not indexed yet
        self._sent = 0  # seq of the latest change sent to the worker
        self._indexed = 0  # every change up to this seq is in the index
        self._progress = asyncio.Event()  # set (and replaced) whenever _indexed moves
        self._outbox: list[tuple[str, int, bytes | None]] = []
        self._done: list[tuple[str, int]] = []  # indexed, its pending mark still in the store
        self._worker: _Worker | None = None
        self._running = asyncio.Event()  # set while a worker is there to take queries
        self._answers: dict[int, asyncio.Future[tuple[bytes, str]]] = {}
        self._qids = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = asyncio.Event()  # set on close: what waits for more work stops waiting
        self.failed = 0
        self.restarts = 0  # processes replaced since the start
        self.backoff = 0.0  # seconds waited before the latest replacement
        documents.subscribe(self.apply)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the worker and give it whatever a previous run left pending."""
        for thing_id, seq in sorted(await self.todo.rdf_pending(), key=lambda pair: pair[1]):
            self._pending[thing_id] = seq
        self._sent = max(self._pending.values(), default=0)
        self._spawn(self._supervise())  # in the background: the server listens meanwhile

    async def _supervise(self) -> None:
        """Run a worker; when it ends, replace it (after a backoff if it ended by itself)."""
        failures = 0
        first = True
        while not self._closed.is_set():
            worker = _Worker(self.path, self.result_cap, self._received)
            try:
                await asyncio.to_thread(worker.start)
            except Exception:
                if self._closed.is_set():
                    return
                logger.exception("could not start the SPARQL index process")
                failures += 1
            else:
                started = time.monotonic()
                self._run(worker, everything=not first and self.path is None)
                ended = asyncio.ensure_future(worker.ended.wait())
                closing = asyncio.ensure_future(self._closed.wait())
                await asyncio.wait((ended, closing), return_when=asyncio.FIRST_COMPLETED)
                for waiter in (ended, closing):
                    waiter.cancel()
                self._worker = None
                self._running.clear()
                self._fail_answers(HTTPProblem(503, "the SPARQL index restarted; retry the query"))
                await asyncio.to_thread(worker.stop)
                if self._closed.is_set():
                    return
                self.restarts += 1
                if worker.killed_because is not None:
                    logger.warning("replacing the SPARQL index process: %s", worker.killed_because)
                    failures = 0
                else:
                    failures = 0 if time.monotonic() - started >= _HEALTHY else failures + 1
                    logger.error(
                        "the SPARQL index process ended (exit code %s); restarting it", worker.exitcode
                    )
            first = False
            self.backoff = min(_BACKOFF[1], _BACKOFF[0] * 2 ** (failures - 1)) if failures else 0.0
            if self.backoff:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), self.backoff)

    def _run(self, worker: _Worker, *, everything: bool) -> None:
        """Make ``worker`` the one serving, and give it everything not indexed yet (with
        ``everything``, every stored description: its index started empty)."""
        if everything:
            for thing_id in self.documents.ids():
                self._pending.setdefault(thing_id, self._sent)  # no change of it is newer
        resend = sorted(self._pending.items(), key=lambda pair: pair[1])
        self._reindexing = {thing_id for thing_id, _ in resend}
        self._worker = worker
        self._running.set()
        if resend:
            worker.send(
                ("index", [(i, seq, r.data if (r := self.documents.get(i)) else None) for i, seq in resend])
            )
            self._sent = max(self._sent, resend[-1][1])
        self._progress.set()  # re-check: what waits for the index waits for the re-indexing now
        self._progress = asyncio.Event()

    async def aclose(self) -> None:
        """Stop the worker (it finishes the batch at hand) and wait for its process to end."""
        self._closed.set()
        self._fail_answers(HTTPProblem(503, "the directory is shutting down"))
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _fail_answers(self, problem: HTTPProblem) -> None:
        for future in self._answers.values():
            if not future.done():
                future.set_exception(problem)
        self._answers.clear()

    @property
    def backlog(self) -> int:
        """Descriptions written but not indexed yet."""
        return len(self._pending)

    @property
    def worker_pid(self) -> int | None:
        return self._worker.pid if self._worker is not None else None

    # -- changes -----------------------------------------------------------------------------
    def apply(self, change: Change) -> None:
        """Queue a committed change for the worker (sent once per event-loop turn, in batches)."""
        self._pending[change.id] = change.seq
        self._sent = change.seq
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._send_outbox)
        self._outbox.append((change.id, change.seq, change.record.data if change.record else None))

    def _send_outbox(self) -> None:
        batch, self._outbox = self._outbox, []
        if batch and self._worker is not None:
            self._worker.send(("index", batch))

    def _received(self, worker: _Worker, message: tuple[Any, ...] | None) -> None:
        """A message of ``worker``, on the event loop; None when its process ended."""
        if message is None:
            worker.ended.set()
            return
        if worker is not self._worker:
            return  # a stopped worker's last words
        if message[0] == "indexed":
            _, seq, done, failures = message
            for thing_id, done_seq in done:
                self._reindexing.discard(thing_id)
                if self._pending.get(thing_id) == done_seq:
                    del self._pending[thing_id]
            for thing_id, reason in failures:
                self.failed += 1
                logger.warning("%s is not in the SPARQL index: %s", thing_id, reason)
            if done:
                if not self._done:
                    self._spawn(self._forget())
                self._done += done
            self._indexed = max(self._indexed, seq)
            self._progress.set()
            self._progress = asyncio.Event()
        else:
            future = self._answers.pop(message[1], None)
            if future is not None and not future.done():
                if message[0] == "answer":
                    future.set_result((message[2], message[3]))
                else:
                    future.set_exception(HTTPProblem(400, message[2]))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forget(self) -> None:
        # Acknowledgements arriving within a second share one transaction (of the store's one
        # thread, which the writers' commits need more).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), _FORGET_DELAY)
        while self._done:
            done, self._done = self._done, []
            try:
                await self.todo.rdf_done(done)
            except Exception:  # the marks stay: the next start re-indexes those descriptions
                logger.exception("could not record %d indexed descriptions", len(done))

    async def caught_up(self, seq: int) -> None:
        """Wait until every change up to ``seq`` is indexed, and a restarted process has
        indexed again what it was given."""
        while self._indexed < seq or self._reindexing:
            await self._progress.wait()

    # -- SPARQL ------------------------------------------------------------------------------
    def check(self, text: str) -> QueryShape:
        """Refuse (400) what must not reach the engine; the query's shape otherwise."""
        if len(text) > MAX_QUERY:
            raise HTTPProblem(400, f"the query is {len(text)} characters long; the limit is {MAX_QUERY}")
        if _UPDATE.match(text):
            raise HTTPProblem(
                400, "SPARQL updates are not accepted; only SELECT, ASK, CONSTRUCT and DESCRIBE"
            )
        shape = query_shape(text)
        if shape.nesting > MAX_NESTING:
            raise HTTPProblem(
                400, f"the query nests groups or expressions {shape.nesting} deep; the limit is {MAX_NESTING}"
            )
        for endpoint in shape.services:
            if not self.services:
                raise HTTPProblem(400, "SPARQL federation (SERVICE) is disabled in this directory")
            if endpoint not in self.services:
                raise HTTPProblem(
                    400,
                    f"SERVICE {endpoint or '(nothing)'} is not one of the endpoints this directory may "
                    "query: " + ", ".join(f"<{s}>" for s in sorted(self.services)),
                )
        return shape

    async def query(self, text: str, accept: str) -> tuple[bytes, str]:
        """Run a query (SELECT/ASK/CONSTRUCT/DESCRIBE) within the time limit and result cap."""
        shape = self.check(text)
        if self._indexed < self._sent and self._worker is not None:
            self._worker.send(("flush",))  # index what it has gathered now, not after a pause
        try:
            async with asyncio.timeout(self.query_timeout):
                seq = self._sent
                while True:  # a process replaced meanwhile has to index everything again
                    await self._running.wait()
                    await self.caught_up(seq)
                    if self._running.is_set():
                        break
        except TimeoutError:
            raise HTTPProblem(
                503,
                f"the SPARQL index is still indexing recent writes ({self.backlog} descriptions to go); "
                "retry shortly",
                headers={"Retry-After": str(max(1, round(self.backlog / 500)))},
            ) from None
        # The time limit bounds the query's own work, so it starts anew once the index is there.
        worker = self._worker
        assert worker is not None
        qid = next(self._qids)
        future: asyncio.Future[tuple[bytes, str]] = asyncio.get_running_loop().create_future()
        self._answers[qid] = future
        # A query choosing its graphs (FROM, FROM NAMED) gets that dataset; the others see the
        # union of every description's graph as their default graph.
        worker.send(("query", qid, text, accept, self.query_timeout, not shape.dataset))
        try:
            return await asyncio.wait_for(future, self.query_timeout + _GRACE)
        except TimeoutError:
            self._answers.pop(qid, None)
            # The engine cannot be interrupted: the process is replaced, so the work stops.
            worker.kill(f"a query ran over the time limit of {self.query_timeout:g} s")
            raise HTTPProblem(400, too_slow(self.query_timeout)) from None


class _Worker:
    """The worker process and the two threads that move messages over its pipes.

    Pipe writes can block while the worker is busy, and reads wait for it: both happen on
    threads, never on the event loop. Messages from the worker are handed to the loop.
    """

    def __init__(self, path: Path | None, result_cap: int, received: Callable[[_Worker, Any], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._received = received
        self.ended = asyncio.Event()  # set once the process has ended and its output is read
        self.killed_because: str | None = None
        self._stopped = False
        self._exitcode: int | None = None
        tasks_in, self._tasks = _CONTEXT.Pipe(duplex=False)  # the worker reads tasks_in
        self._results, results_out = _CONTEXT.Pipe(duplex=False)  # and writes results_out
        self._worker_ends = (tasks_in, results_out)
        self.process = _CONTEXT.Process(
            target=serve,
            args=(tasks_in, results_out, str(path) if path is not None else None, result_cap),
            name="wot-directory-rdf",
            daemon=True,
        )
        self._outbox: SimpleQueue[tuple[Any, ...] | None] = SimpleQueue()
        self._sender = threading.Thread(target=self._send_loop, name="wot-directory-rdf-send", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name="wot-directory-rdf-read", daemon=True)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def exitcode(self) -> int | None:
        """The process's exit code once it ended (kept after :meth:`stop`)."""
        return self._exitcode if self._stopped else self.process.exitcode

    def start(self) -> None:
        try:
            self.process.start()
        finally:
            for end in self._worker_ends:  # the worker's ends: closed here so its death shows as EOF
                end.close()
        self._sender.start()
        self._reader.start()

    def send(self, message: tuple[Any, ...]) -> None:
        self._outbox.put(message)

    def kill(self, reason: str) -> None:
        """End the process now (SIGKILL): its work cannot be stopped any other way."""
        if self.killed_because is None and not self._stopped:
            self.killed_because = reason
            with contextlib.suppress(ValueError, OSError):  # already ended and reaped
                self.process.kill()

    def stop(self) -> None:
        """Close the worker's input, wait for it to end (kill it after 10 s); blocking."""
        self._outbox.put(None)
        if self._sender.is_alive():
            self._sender.join()
        self.process.join(10)
        if self.process.exitcode is None:  # SIGTERM is ignored there (it reaches the whole group)
            self.process.kill()
            self.process.join()
        if self._reader.is_alive():
            self._reader.join()
        self._results.close()
        self._exitcode, self._stopped = self.process.exitcode, True
        self.process.close()

    def _send_loop(self) -> None:
        while (message := self._outbox.get()) is not None:
            with contextlib.suppress(OSError):  # the worker died: its restart resends the backlog
                self._tasks.send(message)
        self._tasks.close()

    def _read_loop(self) -> None:
        conn: Connection = self._results
        while True:
            ready = wait([conn, self.process.sentinel])
            if conn in ready:
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    break
                self._deliver(message)
            elif not conn.poll():
                break
        self._deliver(None)

    def _deliver(self, message: tuple[Any, ...] | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._received, self, message)
