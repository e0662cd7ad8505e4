"""The kubernetes backend: the cluster's API server is the store, every replica a stateless cache.

Each description is one ``ThingDescription`` custom resource (group ``wot-agents.io``, the CRD
in ``deploy/base/crds``) in one namespace. Its name is a hash of the TD's id (an IRI is no valid
object name); ``spec.document`` holds the stored TD text verbatim, so every replica serves the
same bytes; labels (type, tenant, channel, subset, in label-safe form) let the API server and
``kubectl`` filter.

Every replica follows the resource with list + watch (:class:`wot_agents.KubeInformer`: bookmarks,
re-list on 410 Gone, reconnect with backoff) and keeps the descriptions in memory, so reads never
wait for the API server and the indexes follow the same changes on every replica. Writes go to the
API server and are acknowledged once it has stored them in etcd (so a replica killed with
``kill -9`` loses no acknowledged write) and this replica's watch has delivered them (so a client
reads its own writes). Changes are published from the watch, never from the write: a change made
through any replica reaches the indexes and the SSE streams of all of them, in the same order.

Event ids are the changes' ``resourceVersion`` (etcd's revision): the same on every replica, so a
client that reconnects to another replica with ``Last-Event-ID`` resumes where it was. Replay
comes from the replica's journal, and for changes older than the replica's first list, from a
watch the API server replays from that version.

TTL expiry across replicas: every replica purges, and each purge is idempotent (a delete that
finds the description gone is no error; one that finds it renewed meanwhile does not delete it).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from wot_agents import KubeClient, KubeInformer, KubeResource, KubernetesError, KubeWatchEvent

from ._backend import Change, ChangeKind, JournalEntry, Record, decimal_event_id
from ._enrich import merge_diff
from ._json import dumps
from ._memory import DocumentMirror, MemoryRdfBacklog
from ._problems import HTTPProblem

__all__ = ["THING_DESCRIPTIONS", "KubernetesStore", "label_safe", "object_name", "td_labels"]

logger = logging.getLogger("registry.kubernetes")

THING_DESCRIPTIONS = KubeResource("wot-agents.io", "v1alpha1", "thingdescriptions", "ThingDescription")
#: Below etcd's default 1.5 MiB request limit, with room for metadata and managedFields.
DEFAULT_MAX_OBJECT_BYTES = 1024 * 1024
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_UNSAFE = re.compile(r"[^-A-Za-z0-9_.]+")
MANAGED_BY = "app.kubernetes.io/managed-by"


def object_name(thing_id: str) -> str:
    """The object name of a description: ``td-`` and 40 hex digits of the id's SHA-256."""
    return "td-" + hashlib.sha256(thing_id.encode()).hexdigest()[:40]


def label_safe(value: str) -> str:
    """``value`` itself when it is a valid label value (or key name), else a readable form of it
    and a hash: ``lmos:Agent`` -> ``lmos_Agent-1f2e3d4c5b``. Deterministic, so a selector can be
    built from the plain value; never empty."""
    if value and len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    readable = _UNSAFE.sub("_", value).strip("-_.")[:50].strip("-_.")
    return f"{readable}-{digest}" if readable else f"h-{digest}"


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def td_labels(td: dict[str, Any]) -> dict[str, str]:
    """The labels of a description: ``type.wot-agents.io/<@type>``, ``tenant.wot-agents.io/<t>``,
    ``channel.wot-agents.io/<c>`` (``"true"``, one per value: a TD has several) and
    ``wot-agents.io/subset``; tenants, channels and subset lower-cased like the field index."""
    labels = {MANAGED_BY: "wot-agents"}
    for prefix, values in (
        ("type", _strings(td.get("@type"))),
        ("tenant", [v.lower() for v in _strings(td.get("lmos:supportedTenants"))]),
        ("channel", [v.lower() for v in _strings(td.get("lmos:supportedChannels"))]),
    ):
        for value in values[:20]:  # a label per value; a TD listing hundreds gets the first ones
            labels[f"{prefix}.wot-agents.io/{label_safe(value)}"] = "true"
    subset = _strings(td.get("lmos:subset"))
    if subset:
        labels["wot-agents.io/subset"] = label_safe(subset[0].lower())
    return labels


def _record(obj: dict[str, Any]) -> Record | None:
    spec = obj.get("spec") or {}
    thing_id, document = spec.get("id"), spec.get("document")
    if not isinstance(thing_id, str) or not isinstance(document, str):
        return None
    expires = spec.get("expires")
    return Record(thing_id, document.encode(), float(expires) if isinstance(expires, int | float) else None)


def _version(event_id: str) -> int | None:
    return decimal_event_id(event_id)


class KubernetesStore(DocumentMirror, MemoryRdfBacklog):  # this replica's SPARQL index is in memory
    """Descriptions as ``ThingDescription`` objects in ``namespace``; see the module's docstring.

    Pass an open :class:`KubeClient` (kept open: the caller owns it), or let the store connect
    with ``kubeconfig`` / ``context`` (else ``$KUBECONFIG``, ``~/.kube/config`` or the pod's
    service account). ``journal_size`` bounds the replay journal, ``max_object_bytes`` the stored
    object (a larger description gets 413), ``ack_timeout`` how long a write waits for this
    replica's watch to deliver it.
    """

    def __init__(
        self,
        *,
        namespace: str = "default",
        client: KubeClient | None = None,
        kubeconfig: str | Path | None = None,
        context: str | None = None,
        journal_size: int = 100_000,
        max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
        ack_timeout: float = 10.0,
        kind: KubeResource = THING_DESCRIPTIONS,
    ) -> None:
        if journal_size < 1:
            raise ValueError(f"journal_size must be at least 1, not {journal_size}")
        self.namespace = namespace
        self.kind = kind
        self.max_object_bytes = max_object_bytes
        self.ack_timeout = ack_timeout
        self._client = client
        self._owns_client = client is None
        self._kubeconfig = kubeconfig
        self._context = context
        super().__init__()  # records, sorted ids, revision and subscribers: the shared read side
        self._versions: dict[str, str] = {}  # id -> resourceVersion of its object
        self._journal: deque[JournalEntry] = deque(maxlen=journal_size)
        self._journal_start = 0  # the version this replica's history starts after
        self._recent: dict[str, Change] = {}
        self._pending: dict[str, int] = {}
        self._seq = 0
        self._informer: KubeInformer | None = None
        self._opened = False

    @property
    def client(self) -> KubeClient:
        if self._client is None:
            raise RuntimeError("the kubernetes store is not open")
        return self._client

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        if self._opened:
            raise RuntimeError("a kubernetes store opens once")
        self._opened = True
        if self._client is None:
            self._client = await KubeClient.connect(kubeconfig=self._kubeconfig, context=self._context)
        self._informer = KubeInformer(self._client, self.kind, self.namespace, self._on_event)
        host = self._client.host
        try:
            await self._informer.start()
        except KubernetesError as exc:
            await self.aclose()
            raise KubernetesError(
                f"cannot list {self.kind.plural} in namespace {self.namespace!r} of {host}: {exc} "
                "(is the CRD applied? kubectl apply -k deploy/base)",
                status=exc.status,
                reason=exc.reason,
            ) from exc
        self._journal_start = _version(self._informer.resource_version) or 0
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the watch and close the client if the store opened it; idempotent."""
        if self._informer is not None:
            await self._informer.aclose()
            self._informer = None
        if self._client is not None and self._owns_client:
            client, self._client = self._client, None
            await client.aclose()

    # -- the watch ---------------------------------------------------------------------------
    def _on_event(self, event: KubeWatchEvent) -> None:
        record = _record(event.obj)
        if record is None:
            logger.warning(
                "ignoring %s/%s: not a ThingDescription of this directory", self.kind.plural, event.name
            )
            return
        thing_id = record.id
        old = self._records.get(thing_id)
        if event.type == "DELETED":
            if old is None:
                return
            del self._records[thing_id]
            self._versions.pop(thing_id, None)
            del self._sorted[bisect.bisect_left(self._sorted, thing_id)]
            self.revision += 1
            self._publish("thing_deleted", thing_id, None, {"id": thing_id}, event.resource_version)
            return
        self._records[thing_id] = record
        self._versions[thing_id] = event.resource_version
        if not self._informer_synced():
            # The first list, while opening: state to load, not changes to report.
            bisect.insort(self._sorted, thing_id)
            self.revision += 1
            self._seq += 1
            self._pending[thing_id] = self._seq
            return
        if old is None:
            bisect.insort(self._sorted, thing_id)
            self.revision += 1
            self._publish("thing_created", thing_id, record, record.document(), event.resource_version)
        elif old.data != record.data or old.expires != record.expires:
            diff = {**merge_diff(old.document(), record.document()), "id": thing_id}
            self._publish("thing_updated", thing_id, record, diff, event.resource_version)

    def _informer_synced(self) -> bool:
        return self._informer is not None and bool(self._informer.resource_version)

    def _publish(
        self, kind: ChangeKind, thing_id: str, record: Record | None, diff: dict[str, Any], event_id: str
    ) -> None:
        self._seq += 1
        change = Change(self._seq, event_id, kind, thing_id, record, diff)
        self._journal.append(change.entry())
        self._pending[thing_id] = change.seq
        self._recent[event_id] = change
        if len(self._recent) > 4096:
            for key in list(self._recent)[:2048]:
                del self._recent[key]
        for callback in self._subscribers:
            callback(change)

    # -- documents (get, ids, listing, subscribe, expired: DocumentMirror) -------------------
    def _object(self, record: Record) -> dict[str, Any]:
        document = record.document()
        spec: dict[str, Any] = {"id": record.id, "document": record.data.decode()}
        title = document.get("title")
        if isinstance(title, str):
            spec["title"] = title[:256]
        if record.expires is not None:
            spec["expires"] = record.expires
        return {
            "apiVersion": self.kind.api_version,
            "kind": self.kind.kind,
            "metadata": {
                "name": object_name(record.id),
                "namespace": self.namespace,
                "labels": td_labels(document),
            },
            "spec": spec,
        }

    async def put(self, record: Record, diff: dict[str, Any], *, created: bool) -> Change:
        """Create or replace the object (last writer wins); return its change once watched."""
        obj = self._object(record)
        size = len(dumps(obj))
        if size > self.max_object_bytes:
            raise HTTPProblem(
                413,
                f"this description takes {size} bytes as a Kubernetes object; the limit is "
                f"{self.max_object_bytes} (etcd stores at most ~1.5 MiB per object)",
            )
        answer = await self._write(lambda: self._upsert(obj))
        return await self._acknowledged(answer, record.id)

    async def _upsert(self, obj: dict[str, Any]) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        for _ in range(8):
            known = self._informer.objects.get((self.namespace, name)) if self._informer else None
            try:
                if known is None:
                    return await self.client.create(self.kind, self.namespace, obj)
                obj["metadata"]["resourceVersion"] = known["metadata"]["resourceVersion"]
                return await self.client.replace(self.kind, self.namespace, obj)
            except KubernetesError as exc:
                if exc.status != 409:
                    raise
                # Another replica wrote it first: replace its version (a PUT replaces anyway).
                current = await self.client.get(self.kind, self.namespace, name)
                if current is None:
                    obj["metadata"].pop("resourceVersion", None)
                    with contextlib.suppress(KubernetesError):
                        return await self.client.create(self.kind, self.namespace, obj)
                    continue
                obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                with contextlib.suppress(KubernetesError):
                    return await self.client.replace(self.kind, self.namespace, obj)
        raise HTTPProblem(409, "the description kept changing under this write; try again")

    async def _write(self, call: Callable[[], Any]) -> dict[str, Any]:
        try:
            return await call()  # type: ignore[no-any-return]
        except KubernetesError as exc:
            if exc.status == 413 or "too large" in str(exc).lower():
                raise HTTPProblem(
                    413, f"the Kubernetes API refused the description as too large: {exc}"
                ) from None
            raise HTTPProblem(
                503,
                f"the Kubernetes API server did not store the change: {exc}",
                headers={"Retry-After": "1"},
            ) from None

    async def _acknowledged(self, answer: dict[str, Any], thing_id: str) -> Change:
        version = str(answer.get("metadata", {}).get("resourceVersion", ""))
        assert self._informer is not None
        if not await self._informer.wait_for_version(version, self.ack_timeout):
            logger.warning("the watch has not delivered version %s within %g s", version, self.ack_timeout)
        change = self._recent.get(version)
        if change is not None:
            return change
        # Coalesced by a re-list, or not delivered yet: the write is stored all the same.
        record = self._records.get(thing_id)
        kind: ChangeKind = "thing_updated" if record is not None else "thing_deleted"
        return Change(self._seq, version, kind, thing_id, record, {"id": thing_id})

    async def delete(self, thing_id: str) -> Change | None:
        """Delete the description; None when it was not there. Idempotent across replicas."""
        record = self._records.get(thing_id)
        if record is None:
            return None
        name = object_name(thing_id)
        version = self._versions.get(thing_id)
        answer = await self._write(lambda: self._delete(name, version, record))
        if answer is None:
            return None
        return await self._deleted(thing_id)

    async def _deleted(self, thing_id: str) -> Change:
        """The delete's change, once this replica's watch has applied it.

        The API server may answer a DELETE with the object as it was, at its old resourceVersion,
        so waiting for that version returns at once and a read right after the acknowledged
        delete could still find the description. Wait for the watch to remove it instead.
        """
        assert self._informer is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ack_timeout
        while thing_id in self._records:
            seen = _version(self._informer.resource_version or "0") or 0
            if not await self._informer.wait_for_version(str(seen + 1), max(0.0, deadline - loop.time())):
                logger.warning(
                    "the watch has not delivered the delete of %s within %g s", thing_id, self.ack_timeout
                )
                break
        for change in reversed(self._recent.values()):
            if change.id == thing_id and change.kind == "thing_deleted":
                return change
        return Change(
            self._seq, str(self._informer.resource_version), "thing_deleted", thing_id, None, {"id": thing_id}
        )

    async def _delete(self, name: str, version: str | None, record: Record) -> dict[str, Any] | None:
        try:
            return await self.client.delete(self.kind, self.namespace, name, resource_version=version)
        except KubernetesError as exc:
            if exc.status != 409:
                raise
        # Changed meantime by another replica. A purge (this replica saw it expired) must not
        # delete a renewed registration; any other delete removes the newer version too.
        current = await self.client.get(self.kind, self.namespace, name)
        if current is None:
            return None
        fresh = _record(current)
        now = time.time()
        if (
            fresh is not None
            and record.expires is not None
            and record.expires <= now
            and (fresh.expires is None or fresh.expires > now)
        ):
            return None
        return await self.client.delete(
            self.kind, self.namespace, name, resource_version=current["metadata"]["resourceVersion"]
        )

    # -- journal -----------------------------------------------------------------------------
    def valid_event_id(self, event_id: str) -> bool:
        return _version(event_id) is not None

    async def changes_since(self, event_id: str, limit: int) -> list[JournalEntry]:
        """Entries after ``event_id``: from the journal, and from the API server's own history
        for versions older than this replica's (another replica's events)."""
        after = _version(event_id)
        if after is not None and after > self._reached() and self._informer is not None:
            # Another replica may have watched it a moment before this one (else: not ours).
            await self._informer.wait_for_version(str(after), min(self.ack_timeout, 1.0))
        if after is None or after > self._reached():
            after = 0  # not from this cluster's history
        oldest_kept = _version(self._journal[0].event_id) or 0 if self._journal else self._journal_start + 1
        if after < self._journal_start or (self._journal and after < oldest_kept - 1):
            replayed = await self._replay(after, limit)
            if replayed is not None:
                return replayed
            after = 0
        entries: list[JournalEntry] = []
        for entry in self._journal:
            if (_version(entry.event_id) or 0) > after:
                entries.append(entry)
                if len(entries) >= limit:
                    break
        return entries

    def _reached(self) -> int:
        """The newest version this replica's watch has applied."""
        if self._informer is None:
            return self._journal_start
        return max(_version(self._informer.resource_version) or 0, self._journal_start)

    async def _replay(self, after: int, limit: int) -> list[JournalEntry] | None:
        """The changes after version ``after`` as the API server replays them; None when it has
        compacted that history away (410) or cannot be asked."""
        if after <= 0:
            return None
        stop = self._journal_start
        entries: list[JournalEntry] = []
        documents: dict[str, dict[str, Any]] = {}
        try:
            # The API server sends what it has after ``after`` at once; a watch of one second
            # ends on its own (nothing marks "caught up" when no change of ours followed).
            stream = self.client.watch(self.kind, self.namespace, str(after), timeout_seconds=1)
            async with asyncio.timeout(self.ack_timeout), contextlib.aclosing(stream):
                async for raw in stream:
                    obj = raw.get("object") or {}
                    version = str(obj.get("metadata", {}).get("resourceVersion", ""))
                    if (_version(version) or 0) > stop:
                        break
                    record = _record(obj) if raw.get("type") != "BOOKMARK" else None
                    if record is not None:
                        entries.append(self._replayed(raw["type"], record, version, documents))
                        if len(entries) >= limit:
                            break
        except (KubernetesError, TimeoutError) as exc:
            logger.info("cannot replay changes after %d from the API server: %s", after, exc)
            return None
        if len(entries) < limit:
            for entry in self._journal:
                entries.append(entry)
                if len(entries) >= limit:
                    break
        return entries

    def _replayed(
        self, event_type: str, record: Record, version: str, documents: dict[str, dict[str, Any]]
    ) -> JournalEntry:
        if event_type == "DELETED":
            documents.pop(record.id, None)
            return JournalEntry(0, version, "thing_deleted", record.id, {"id": record.id})
        document = record.document()
        before = documents.get(record.id)
        documents[record.id] = document
        if event_type == "ADDED":
            return JournalEntry(0, version, "thing_created", record.id, document)
        # Without the version before it, an update's merge patch sets every member.
        diff = merge_diff(before, document) if before is not None else dict(document)
        return JournalEntry(0, version, "thing_updated", record.id, {**diff, "id": record.id})
