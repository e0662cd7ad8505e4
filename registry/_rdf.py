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
converts only what was pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import re
import threading
from collections.abc import Callable, Coroutine
from multiprocessing.connection import Connection, wait
from pathlib import Path
from queue import SimpleQueue
from typing import Any

from ._backend import Change, DocumentStore, IndexBacklog
from ._problems import HTTPProblem
from ._rdf_worker import serve, too_slow

__all__ = ["RdfIndex"]

logger = logging.getLogger("registry.rdf")

_SERVICE = re.compile(r"\bSERVICE\b", re.IGNORECASE)
_UPDATE = re.compile(
    r"^\s*(?:(?:PREFIX|BASE)\s[^\n]*\s*)*(INSERT|DELETE|LOAD|CLEAR|CREATE|DROP|COPY|MOVE|ADD|WITH)\b",
    re.IGNORECASE,
)

#: Seconds the store's pending marks of indexed descriptions wait to be dropped together.
_FORGET_DELAY = 1.0
#: A forkserver starts each worker as a fork of a small clean process that has already imported
#: the worker's modules: milliseconds, where a spawned interpreter takes most of a second, and
#: without forking the server's threads.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["registry._rdf_worker"])


class RdfIndex:
    """Feeds the worker process, tracks what it has indexed, and forwards queries to it."""

    def __init__(
        self,
        documents: DocumentStore,
        todo: IndexBacklog,
        *,
        query_timeout: float = 5.0,
        result_cap: int = 10_000,
        allow_federation: bool = False,
    ) -> None:
        self.documents = documents
        self.todo = todo
        self.path: Path | None = todo.rdf_path
        self.query_timeout = query_timeout
        self.result_cap = result_cap
        self.allow_federation = allow_federation
        self._pending: dict[str, int] = {}  # sent, not yet indexed: id -> seq of its latest change
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
        documents.subscribe(self.apply)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the worker and give it whatever a previous run left pending."""
        for thing_id, seq in sorted(await self.todo.rdf_pending(), key=lambda pair: pair[1]):
            self._pending[thing_id] = seq
        self._sent = max(self._pending.values(), default=0)
        self._spawn(self._start_worker())  # in the background: the server listens meanwhile

    async def _start_worker(self) -> None:
        worker = _Worker(self.path, self.result_cap, self._received)
        await asyncio.to_thread(worker.start)
        if self._closed.is_set():
            await asyncio.to_thread(worker.stop)
            return
        self._worker = worker
        self._running.set()
        # Everything not indexed yet, with its current text (changes queued meanwhile included).
        resend = sorted(self._pending.items(), key=lambda pair: pair[1])
        if resend:
            worker.send(
                ("index", [(i, seq, r.data if (r := self.documents.get(i)) else None) for i, seq in resend])
            )
            self._sent = max(self._sent, resend[-1][1])

    async def aclose(self) -> None:
        """Stop the worker (it finishes the batch at hand) and wait for its process to end."""
        self._closed.set()
        if self._worker is not None:
            worker, self._worker = self._worker, None
            await asyncio.to_thread(worker.stop)
        for future in self._answers.values():
            future.cancel()
        self._answers.clear()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

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
        if worker is not self._worker:
            return  # a stopped worker's last words
        if message is None:
            self._worker = None
            self._running.clear()
            self._spawn(self._restart(worker))
        elif message[0] == "indexed":
            _, seq, done, failures = message
            for thing_id, done_seq in done:
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

    async def _restart(self, worker: _Worker) -> None:
        logger.error("the SPARQL index process ended (exit code %s); restarting it", worker.exitcode)
        await asyncio.to_thread(worker.stop)
        for future in self._answers.values():
            if not future.done():
                future.set_exception(HTTPProblem(503, "the SPARQL index restarted; retry the query"))
        self._answers.clear()
        if not self._closed.is_set():
            await self._start_worker()

    async def caught_up(self, seq: int) -> None:
        """Wait until every change up to ``seq`` is indexed."""
        while self._indexed < seq:
            await self._progress.wait()

    # -- SPARQL ------------------------------------------------------------------------------
    async def query(self, text: str, accept: str) -> tuple[bytes, str]:
        """Run a query (SELECT/ASK/CONSTRUCT/DESCRIBE) within the time limit and result cap."""
        if _UPDATE.match(text):
            raise HTTPProblem(
                400, "SPARQL updates are not accepted; only SELECT, ASK, CONSTRUCT and DESCRIBE"
            )
        if not self.allow_federation and _SERVICE.search(text):
            raise HTTPProblem(400, "SPARQL federation (SERVICE) is disabled in this directory")
        if self._indexed < self._sent and self._worker is not None:
            self._worker.send(("flush",))  # index what it has gathered now, not after a pause
        try:
            async with asyncio.timeout(self.query_timeout):
                await self.caught_up(self._sent)
                await self._running.wait()
        except TimeoutError:
            raise HTTPProblem(
                503,
                f"the SPARQL index is still indexing recent writes ({self.backlog} descriptions to go); "
                "retry shortly",
                headers={"Retry-After": str(max(1, round(self.backlog / 500)))},
            ) from None
        # The time limit bounds the query's own work, so it starts anew once the index is there.
        assert self._worker is not None
        qid = next(self._qids)
        future: asyncio.Future[tuple[bytes, str]] = asyncio.get_running_loop().create_future()
        self._answers[qid] = future
        self._worker.send(("query", qid, text, accept, self.query_timeout))
        try:
            return await asyncio.wait_for(future, self.query_timeout + 0.5)
        except TimeoutError:
            self._answers.pop(qid, None)
            raise HTTPProblem(400, too_slow(self.query_timeout)) from None


class _Worker:
    """The worker process and the two threads that move messages over its pipes.

    Pipe writes can block while the worker is busy, and reads wait for it: both happen on
    threads, never on the event loop. Messages from the worker are handed to the loop.
    """

    def __init__(self, path: Path | None, result_cap: int, received: Callable[[_Worker, Any], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._received = received
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
        return self.process.exitcode

    def start(self) -> None:
        self.process.start()
        for end in self._worker_ends:  # the worker's ends: closed here so its death shows as EOF
            end.close()
        self._sender.start()
        self._reader.start()

    def send(self, message: tuple[Any, ...]) -> None:
        self._outbox.put(message)

    def stop(self) -> None:
        """Close the worker's input, wait for it to end (terminate it after 10 s); blocking."""
        self._outbox.put(None)
        if self._sender.is_alive():
            self._sender.join()
        self.process.join(10)
        if self.process.exitcode is None:
            self.process.terminate()
            self.process.join(5)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
        if self._reader.is_alive():
            self._reader.join()
        self._results.close()
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
