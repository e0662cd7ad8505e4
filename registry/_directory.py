"""The directory as a service: the one write path, the reads and the searches, over any store.

Every writer calls :class:`Directory`: the HTTP handlers, the TTL purge, and any ingest that
runs in the directory's process (a Kubernetes watch). A write is validated, enriched with the
``registration`` object (WoT Discovery 7.3.1.1), diffed against the description it replaces
(the ``diff=true`` event data) and stored; the store then publishes one change to the field
index, the RDF index and the event hub, in that order, so indexes and events cannot disagree
with the store whatever wrote it.

The store is injected (any :class:`~registry.Store`; :class:`~registry.SQLiteStore` on
``settings.db`` by default) and belongs to the directory from then on: the directory opens it on
entry and closes it on exit. Errors are :class:`~registry._problems.HTTPProblem` (a status and
a sentence), which a non-HTTP caller can log as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from wot_agents import validate

from ._backend import Change, Record, Store
from ._config import DirectorySettings
from ._enrich import RegistrationError, anonymous_id, enrich, merge_diff, merge_patch, parse_time
from ._events import EventHub
from ._groups import Groups
from ._index import SORT_KEYS, Expr, FieldIndex, parse_filter
from ._json import dumps
from ._jsonpath import JsonPathQuery
from ._problems import HTTPProblem, validation_problem
from ._rdf import RdfIndex
from ._store import SQLiteStore
from ._trust import SignatureCheck

__all__ = ["Directory"]

logger = logging.getLogger("registry")

_ID = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`\x00-\x1f\x7f]*$")


class Directory:
    """Store, field index, RDF index, event hub and the purge task, behind one service API."""

    def __init__(self, settings: DirectorySettings | None = None, *, store: Store | None = None) -> None:
        self.settings = settings = settings if settings is not None else DirectorySettings()
        self.store: Store = (
            store if store is not None else SQLiteStore(settings.db, journal_size=settings.journal_size)
        )
        # Subscribed in this order: the event hub publishes a change once the indexes have it.
        self.fields = FieldIndex()
        self.store.subscribe(self.fields.apply)
        self.rdf = RdfIndex(
            self.store,
            self.store,
            query_timeout=settings.query_timeout,
            result_cap=settings.result_cap,
            services=settings.sparql_services,
        )
        self.events = EventHub(
            self.store,
            self.store,
            queue_size=settings.event_queue,
            write_timeout=settings.event_write_timeout,
            keepalive=settings.event_keepalive,
        )
        self.signatures = SignatureCheck(settings)
        #: Agent groups, with the directory as their authority (``/groups``).
        self.groups = Groups(settings)
        self._purge_task: asyncio.Task[None] | None = None
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # per id being written: lock, users

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Directory:
        await self.store.__aenter__()
        try:
            self.fields.load(self.store)
            await self.rdf.start()
        except BaseException:
            await self.aclose()
            raise
        self._purge_task = asyncio.create_task(self._purge_loop(), name="wot-directory-purge")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the purge, end event streams, close the indexes and the store; idempotent."""
        if self._purge_task is not None:
            self._purge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purge_task
            self._purge_task = None
        self.events.close()
        await self.rdf.aclose()
        await self.store.aclose()

    # -- reads -------------------------------------------------------------------------------
    def get(self, thing_id: str, *, now: float | None = None) -> Record | None:
        """The live description with ``thing_id``; an expired one is gone even before the purge."""
        record = self.store.get(thing_id)
        now = time.time() if now is None else now
        if record is None or (record.expires is not None and record.expires <= now):
            return None
        return record

    def ids(self) -> Sequence[str]:
        """Every stored id in code point order (the listing order); expired ones until purged."""
        return self.store.ids()

    def records(self, ids: Iterable[str] | None = None, *, now: float | None = None) -> list[Record]:
        """The live descriptions among ``ids`` (default: all, in listing order), in their order."""
        now = time.time() if now is None else now
        found = (self.get(thing_id, now=now) for thing_id in (self.store.ids() if ids is None else ids))
        return [record for record in found if record is not None]

    @property
    def revision(self) -> int:
        """Changes whenever a description is created or deleted: the listing's etag."""
        return self.store.revision

    def check_id(self, thing_id: str) -> None:
        """Refuse (400) an id that is too long or not an absolute IRI."""
        limit = self.settings.max_id_length
        if len(thing_id) > limit:
            raise HTTPProblem(400, f"the id is {len(thing_id)} characters long; the limit is {limit}")
        if not _ID.match(thing_id):
            raise HTTPProblem(400, f"the id {thing_id!r} is not an absolute IRI (like urn:example:lamp-1)")

    # -- writes ------------------------------------------------------------------------------
    async def put(self, thing_id: str, td: Mapping[str, Any]) -> Change:
        """Create or replace the description ``thing_id`` (7.3.2.1.1 / 7.3.2.1.3).

        A TD without an id gets ``thing_id``; one with another id is refused. The change's
        ``kind`` says whether it was created or updated.
        """
        self.check_id(thing_id)
        td = dict(td)
        self.signatures.needs_own_id(td)
        body_id = td.setdefault("id", thing_id)
        if body_id != thing_id:
            raise HTTPProblem(400, f"the TD's id {body_id!r} differs from the id in the URL {thing_id!r}")
        async with self._writing(thing_id):
            return await self._write(thing_id, td, self.get(thing_id))

    async def create(self, td: Mapping[str, Any]) -> Change:
        """Register an Anonymous TD under a new local id, a UUID URN (7.3.1.3); ``change.id`` is it."""
        if "id" in td:
            raise HTTPProblem(
                400, "this TD has an id: register it with PUT /things/{id}; POST /things is for Anonymous TDs"
            )
        self.signatures.needs_own_id(td)
        thing_id = anonymous_id()
        return await self._write(thing_id, {**td, "id": thing_id}, None)

    async def patch(self, thing_id: str, patch: Mapping[str, Any]) -> Change:
        """Apply an RFC 7396 merge patch to a live description (7.3.2.1.4); 404 when there is none."""
        self.check_id(thing_id)
        async with self._writing(thing_id):
            old = self.get(thing_id)
            if old is None:
                raise HTTPProblem(404, f"no Thing Description with id {thing_id!r}")
            merged = merge_patch(old.document(), patch)
            if merged.get("id") != thing_id:
                raise HTTPProblem(400, "a merge patch cannot change or remove the id")
            return await self._write(thing_id, merged, old)

    async def delete(self, thing_id: str) -> Change | None:
        """Remove a live description; None when there is none (an expired one counts as none)."""
        async with self._writing(thing_id):
            if self.get(thing_id) is None:
                return None
            return await self.store.delete(thing_id)

    async def purge(self, now: float | None = None) -> int:
        """Delete every registration expired at ``now`` (7.3.1.2); returns how many."""
        now = time.time() if now is None else now
        purged = 0
        for thing_id in await self.store.expired(now):
            async with self._writing(thing_id):
                record = self.store.get(thing_id)  # still expired: not renewed since the list was made
                if record is not None and record.expires is not None and record.expires <= now:
                    purged += await self.store.delete(thing_id) is not None
        if purged:
            logger.info("purged %d expired descriptions", purged)
        return purged

    @contextlib.asynccontextmanager
    async def _writing(self, thing_id: str) -> AsyncIterator[None]:
        """One write per id at a time: a write reads the description it replaces, and a concurrent
        one in between (validation and signature checks await) would otherwise be lost."""
        lock, users = self._locks.get(thing_id, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[thing_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[thing_id]
            if users == 1:
                del self._locks[thing_id]
            else:
                self._locks[thing_id] = (lock, users - 1)

    async def _write(self, thing_id: str, td: dict[str, Any], old: Record | None) -> Change:
        problems = validate(td)
        if problems:
            raise validation_problem(problems)
        await self.signatures.check(td)  # signed content verified, required, by a trusted issuer
        now = time.time()
        old_doc = old.document() if old is not None else None
        created = parse_time(old_doc.get("registration", {}).get("created")) if old_doc is not None else None
        try:
            enriched, expires = enrich(td, now=now, created=created, max_ttl=self.settings.max_ttl)
        except RegistrationError as exc:
            raise HTTPProblem(400, str(exc)) from None
        diff = enriched if old_doc is None else {**merge_diff(old_doc, enriched), "id": thing_id}
        return await self.store.put(Record(thing_id, dumps(enriched), expires), diff, created=old is None)

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.purge_interval)
            try:
                await self.purge()
            except Exception:
                logger.exception("purging expired descriptions failed")

    # -- searches ----------------------------------------------------------------------------
    def search(self, expr: Expr | None = None, sort: Sequence[str] = ()) -> list[str]:
        """Ids matching a filter expression (all without one), sorted by ``sort`` keys then id.

        The keys are ``id``, ``title``, ``created``, ``modified``, ``-`` in front to reverse.
        """
        for key in sort:
            if not isinstance(key, str) or key.lstrip("-") not in SORT_KEYS:
                raise HTTPProblem(
                    400, f"cannot sort by {key!r}; sort by {', '.join(SORT_KEYS)} (prefix - to reverse)"
                )
        ids = self.fields.search(parse_filter(expr)) if expr is not None else self.store.ids()
        return self.fields.sort(ids, list(sort)) if sort else sorted(ids)

    async def search_jsonpath(self, query: str) -> list[Any]:
        """The values an RFC 9535 query selects over the live descriptions, within the limits."""
        settings = self.settings
        compiled = JsonPathQuery(query, result_cap=settings.result_cap, timeout=settings.query_timeout)
        ids: Iterable[str] = self.store.ids()
        if compiled.preselection is not None:  # per conjunction of the filter, what it requires
            candidates: set[str] = set()
            for needs in compiled.preselection:
                if needs.members:  # top-level equalities: the field index
                    candidates |= set.intersection(*(self.fields.with_member(k, v) for k, v in needs.members))
                else:  # equalities on any path: the descriptions holding the rarest string
                    candidates |= self.fields.with_value(self.fields.rarest_value(needs.values))
            ids = sorted(candidates)
        return await compiled.run([record.document for record in self.records(ids)])

    async def search_sparql(self, query: str, accept: str = "") -> tuple[bytes, str]:
        """A SPARQL query's answer (body, content type) in the format ``accept`` asks for."""
        return await self.rdf.query(query, accept)
