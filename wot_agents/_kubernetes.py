"""A small asyncio client for any Kubernetes resource, and the list + watch loop that follows one.

Written over a generic (group, version, plural) :class:`KubeResource`, so the same code reads core
``v1/services`` in a cluster and a Service-shaped custom resource on a CRD-only test API server.
Authentication and TLS come from kubernetes-asyncio's configuration loaders (kubeconfig, exec
plugins, in-cluster service account with token refresh); requests go through its aiohttp session,
but the paths and the watch protocol are ours: the generated API classes cannot address a
resource chosen at run time, and their watch helper hides bookmarks and 410 Gone.

:class:`KubeInformer` is the list + watch loop: a paged list gives a consistent snapshot and its
``resourceVersion``; a watch from there (with bookmarks, so the version stays fresh even when
nothing changes) delivers every later change. On 410 Gone (the version was compacted away) it
lists again and reports the difference as changes, so nothing is lost or reported twice; on a
dropped connection or an API-server restart it reconnects with exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import quote

import aiohttp

from ._backoff import Backoff
from ._errors import KubernetesError

__all__ = [
    "KUBE_LEASES",
    "KUBE_SERVICES",
    "KubeClient",
    "KubeInformer",
    "KubeResource",
    "KubeWatchEvent",
]

logger = logging.getLogger("wot_agents.kubernetes")
Obj = dict[str, Any]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class KubeResource:
    """A resource type by group, version and plural; ``group=""`` is the core API (``/api/v1``)."""

    group: str
    version: str
    plural: str
    kind: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        """The REST path; ``namespace=None`` addresses every namespace (lists and watches)."""
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        path = f"{root}/namespaces/{quote(namespace, safe='')}" if namespace else root
        path += f"/{self.plural}"
        if name is not None:
            path += f"/{quote(name, safe='')}"
            if subresource:
                path += f"/{subresource}"
        return path


KUBE_SERVICES = KubeResource("", "v1", "services", "Service")
KUBE_LEASES = KubeResource("coordination.k8s.io", "v1", "leases", "Lease")


def _error(status: int | None, body: bytes | str, what: str) -> KubernetesError:
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    reason, message = "", text.strip()[:500]
    with contextlib.suppress(ValueError, AttributeError):
        status_obj = json.loads(text)
        reason = str(status_obj.get("reason", ""))
        message = str(status_obj.get("message", message))
    return KubernetesError(f"{what}: {status} {reason}: {message}", status=status, reason=reason)


class KubeClient:
    """An open connection to one API server; an async context manager (``aclose`` is idempotent).

    :meth:`connect` reads a kubeconfig (``kubeconfig``, else ``$KUBECONFIG`` / ``~/.kube/config``)
    or, inside a pod, the service account.
    """

    def __init__(self, api: Any, *, request_timeout: float = 30.0, namespace: str = "default") -> None:
        self._api = api  # kubernetes_asyncio.client.ApiClient
        self.request_timeout = request_timeout
        #: The namespace of the kubeconfig's context, or the pod's own (``default`` when neither says).
        self.default_namespace = namespace
        self._closed = False

    @classmethod
    async def connect(
        cls,
        *,
        kubeconfig: str | Path | None = None,
        context: str | None = None,
        request_timeout: float = 30.0,
    ) -> KubeClient:
        # kubernetes-asyncio imports ~900 modules (every generated model): a third of a second
        # the first time, so it happens on a worker thread, not on the event loop.
        client, config = await asyncio.to_thread(_import_client)
        configuration = client.Configuration()
        try:
            if kubeconfig is None and context is None and _in_cluster():
                config.load_incluster_config(client_configuration=configuration)
            else:
                await config.load_kube_config(
                    config_file=str(kubeconfig) if kubeconfig is not None else None,
                    context=context,
                    client_configuration=configuration,
                )
        except Exception as exc:  # the loaders raise ConfigException, OSError, yaml errors...
            raise KubernetesError(f"cannot load the Kubernetes configuration: {exc}") from exc
        namespace = await asyncio.to_thread(_default_namespace, kubeconfig, context)
        return cls(
            client.ApiClient(configuration=configuration),
            request_timeout=request_timeout,
            namespace=namespace,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._api.close()
            # aiohttp closes TLS connections in the background: let them finish (its docs' advice).
            await asyncio.sleep(0.1)

    @property
    def host(self) -> str:
        return str(self._api.configuration.host)

    # -- requests ----------------------------------------------------------------------------
    async def _open(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        limits: aiohttp.ClientTimeout | float | None = None,
    ) -> aiohttp.ClientResponse:
        params = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in (query or {}).items()]
        try:
            response: aiohttp.ClientResponse = await self._api.call_api(
                path,
                method,
                query_params=params,
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=limits if limits is not None else self.request_timeout,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubernetesError(f"{method} {path}: the API server could not be reached: {exc!r}") from exc
        return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        """One request; the decoded JSON answer, or :class:`KubernetesError` for any non-2xx."""
        response = await self._open(method, path, query=query, body=body, content_type=content_type)
        try:
            data = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubernetesError(f"{method} {path}: the answer broke off: {exc!r}") from exc
        finally:
            response.release()
        if not 200 <= response.status < 300:
            raise _error(response.status, data, f"{method} {path}")
        return json.loads(data)  # type: ignore[no-any-return]

    async def get(self, kind: KubeResource, namespace: str | None, name: str) -> Obj | None:
        """The object, or None when there is none."""
        try:
            return await self.request("GET", kind.path(namespace, name))
        except KubernetesError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(
        self,
        kind: KubeResource,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        page: int = 500,
    ) -> tuple[list[Obj], str]:
        """Every object (paged, one consistent snapshot) and the list's ``resourceVersion``."""
        items: list[Obj] = []
        query: dict[str, Any] = {"limit": page}
        if label_selector:
            query["labelSelector"] = label_selector
        while True:
            answer = await self.request("GET", kind.path(namespace), query=query)
            items.extend(answer.get("items") or [])
            meta = answer.get("metadata", {})
            if not meta.get("continue"):
                return items, str(meta.get("resourceVersion", ""))
            query["continue"] = meta["continue"]

    async def create(self, kind: KubeResource, namespace: str | None, obj: Obj) -> Obj:
        return await self.request("POST", kind.path(namespace), body=obj)

    async def replace(self, kind: KubeResource, namespace: str | None, obj: Obj) -> Obj:
        """PUT: fails with 409 Conflict when ``metadata.resourceVersion`` is not the current one."""
        return await self.request("PUT", kind.path(namespace, obj["metadata"]["name"]), body=obj)

    async def merge_patch(
        self,
        kind: KubeResource,
        namespace: str | None,
        name: str,
        patch: Obj,
        *,
        subresource: str | None = None,
    ) -> Obj:
        return await self.request(
            "PATCH",
            kind.path(namespace, name, subresource),
            body=patch,
            content_type="application/merge-patch+json",
        )

    async def delete(
        self, kind: KubeResource, namespace: str | None, name: str, *, resource_version: str | None = None
    ) -> Obj | None:
        """Delete (only that version, when given); None when it was already gone."""
        body: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if resource_version is not None:
            body["preconditions"] = {"resourceVersion": resource_version}
        try:
            return await self.request("DELETE", kind.path(namespace, name), body=body)
        except KubernetesError as exc:
            if exc.status == 404:
                return None
            raise

    async def watch(
        self,
        kind: KubeResource,
        namespace: str | None,
        resource_version: str,
        *,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncGenerator[Obj, None]:
        """The raw watch events after ``resource_version`` (bookmarks included) until the server
        ends the watch; an ``ERROR`` event or a failed request raises :class:`KubernetesError`
        (status 410 when the version is too old). Iterate it inside ``contextlib.aclosing``, so
        leaving the loop early closes the connection at once."""
        query: dict[str, Any] = {
            "watch": True,
            "allowWatchBookmarks": True,
            "resourceVersion": resource_version,
            "timeoutSeconds": timeout_seconds,
        }
        if label_selector:
            query["labelSelector"] = label_selector
        limits = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 30)
        response = await self._open("GET", kind.path(namespace), query=query, limits=limits)
        try:
            if response.status != 200:
                raise _error(response.status, await response.read(), f"watch {kind.plural}")
            while True:
                try:
                    line = await response.content.readline()
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    raise KubernetesError(f"watch {kind.plural}: the stream broke off: {exc!r}") from exc
                if not line:
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object", {})
                    raise KubernetesError(
                        f"watch {kind.plural}: {status.get('message', status)}",
                        status=int(status.get("code", 0)) or None,
                        reason=str(status.get("reason", "")),
                    )
                yield event
        finally:
            response.release()
            response.close()


_SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def _import_client() -> tuple[Any, Any]:
    """kubernetes-asyncio's ``client`` and ``config`` packages (imported on first use)."""
    try:
        from kubernetes_asyncio import client, config
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise KubernetesError(
            "the Kubernetes client is not installed: pip install 'wot-agents[kubernetes]'"
        ) from exc
    return client, config


def _in_cluster() -> bool:
    return (_SERVICE_ACCOUNT / "token").exists()


def _default_namespace(kubeconfig: str | Path | None, context: str | None) -> str:
    """The namespace a kubectl user would get: the context's, else the pod's, else ``default``."""
    import os

    import yaml

    paths = [str(kubeconfig)] if kubeconfig else os.environ.get("KUBECONFIG", "").split(os.pathsep)
    if not any(paths):
        paths = [str(Path.home() / ".kube" / "config")]
    for path in filter(None, paths):
        try:
            config = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        name = context or config.get("current-context")
        for entry in config.get("contexts") or []:
            if entry.get("name") == name:
                namespace = (entry.get("context") or {}).get("namespace")
                if namespace:
                    return str(namespace)
    try:
        return (_SERVICE_ACCOUNT / "namespace").read_text().strip() or "default"
    except OSError:
        return "default"


@dataclass(frozen=True, slots=True)
class KubeWatchEvent:
    """One change of a watched object: its type, the object after it (before, for DELETED)."""

    type: EventType
    obj: Obj
    resource_version: str

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"].get("namespace", ""))


def object_key(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return str(meta.get("namespace", "")), str(meta["name"])


class KubeInformer:
    """Keeps ``objects`` equal to the server's objects of one kind, and calls ``handler`` per change.

    ``handler`` gets every change in the server's order: first the initial list as ``ADDED``
    events, then watch events; after a re-list (410 Gone) the difference from what was known
    (objects added, changed or gone meanwhile). ``on_synced`` runs after each complete list.
    Backoff after errors grows from ``backoff`` to ``max_backoff`` seconds (with jitter) and
    resets once a watch delivers again.
    """

    def __init__(
        self,
        client: KubeClient,
        kind: KubeResource,
        namespace: str | None,
        handler: Callable[[KubeWatchEvent], Awaitable[None] | None],
        *,
        label_selector: str | None = None,
        watch_timeout: int = 300,
        backoff: float = 0.1,
        max_backoff: float = 10.0,
    ) -> None:
        self.client = client
        self.kind = kind
        self.namespace = namespace
        self.handler = handler
        self.label_selector = label_selector
        self.watch_timeout = watch_timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._retry = Backoff(backoff, max_backoff, jitter=0.5)  # refuses nonsense here, not in the task
        self.objects: dict[tuple[str, str], Obj] = {}
        self.resource_version = ""
        self.relists = 0  # lists after a 410 Gone
        self.watches = 0  # watch requests made
        self._synced = asyncio.Event()
        self._seen: asyncio.Condition = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Start following: list first (raising its error), then watch in the background.

        Started again after :meth:`aclose`, it resumes watching from the version it had reached
        (a re-list follows if that version has expired meanwhile).
        """
        if not self.resource_version:
            await self._relist()
        self._task = asyncio.create_task(self._run(), name=f"watch-{self.kind.plural}")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_synced(self) -> None:
        await self._synced.wait()

    async def wait_for_version(self, resource_version: str, within: float) -> bool:
        """Wait until a change at (or after) ``resource_version`` is applied; False after ``within`` s.

        Kubernetes resource versions are opaque, but etcd-backed ones are increasing integers,
        the case this relies on; a non-integer version is treated as reached.
        """
        target = _version_number(resource_version)
        if target is None:
            return True
        async with self._seen:
            try:
                await asyncio.wait_for(
                    self._seen.wait_for(lambda: (_version_number(self.resource_version) or 0) >= target),
                    within,
                )
            except TimeoutError:
                return False
        return True

    async def _advance(self, resource_version: str) -> None:
        self.resource_version = resource_version
        async with self._seen:
            self._seen.notify_all()

    async def _emit(self, event: KubeWatchEvent) -> None:
        result = self.handler(event)
        if result is not None:
            await result

    async def _relist(self) -> None:
        items, version = await self.client.list(self.kind, self.namespace, label_selector=self.label_selector)
        fresh = {object_key(obj): obj for obj in items}
        changes: list[KubeWatchEvent] = []
        for key, obj in fresh.items():
            old = self.objects.get(key)
            if old is None:
                changes.append(KubeWatchEvent("ADDED", obj, obj["metadata"].get("resourceVersion", version)))
            elif old["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                changes.append(
                    KubeWatchEvent("MODIFIED", obj, obj["metadata"].get("resourceVersion", version))
                )
        for key, old in self.objects.items():
            if key not in fresh:
                changes.append(KubeWatchEvent("DELETED", old, version))
        changes.sort(key=lambda e: _version_number(e.resource_version) or 0)
        self.objects = fresh
        for change in changes:
            await self._emit(change)
        self._synced.set()
        await self._advance(version)

    async def _run(self) -> None:
        retry = self._retry
        retry.reset()
        need_list = False
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                self.watches += 1
                stream = self.client.watch(
                    self.kind,
                    self.namespace,
                    self.resource_version,
                    label_selector=self.label_selector,
                    timeout_seconds=self.watch_timeout,
                )
                # aclosing: a cancel while a change is being applied closes the stream at once.
                async with contextlib.aclosing(stream):
                    async for raw in stream:
                        retry.reset()
                        await self._apply(raw)
            except KubernetesError as exc:
                if exc.status == 410:
                    logger.info("watch of %s expired (410 Gone): listing again", self.kind.plural)
                    self.relists += 1
                    need_list = True
                    continue
                logger.warning(
                    "watch of %s failed, retrying in %.1f s: %s", self.kind.plural, retry.delay, exc
                )
                await retry.wait()
                if exc.status is not None and exc.status >= 500:
                    need_list = False  # the server answered: watch again from where we are

    async def _apply(self, raw: Obj) -> None:
        kind = raw.get("type")
        obj: Obj = raw.get("object") or {}
        version = str(obj.get("metadata", {}).get("resourceVersion", ""))
        if kind == "BOOKMARK":
            if version:
                await self._advance(version)
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return
        key = object_key(obj)
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        await self._emit(KubeWatchEvent(kind, obj, version))
        await self._advance(version)


def _version_number(version: str) -> int | None:
    return int(version) if version.isdigit() else None
