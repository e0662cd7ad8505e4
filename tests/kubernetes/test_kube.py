"""The generic Kubernetes client and the list + watch loop, against the real API server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from wot_agents import KubeClient, KubeInformer, KubeResource, KubernetesError, KubeWatchEvent

from ._apiserver import KubeApiServer
from .conftest import SERVICE_GROUP

SERVICES = KubeResource(SERVICE_GROUP, "v1", "services", "Service")


def service(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": SERVICES.api_version,
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"clusterIP": "127.0.0.1", "ports": [{"name": "http", "port": 80}]},
    }


class Recorder:
    """The events an informer reported, and a way to wait for a condition on them."""

    def __init__(self) -> None:
        self.events: list[KubeWatchEvent] = []
        self._changed = asyncio.Condition()

    async def __call__(self, event: KubeWatchEvent) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def seen(self) -> list[tuple[str, str]]:
        return [(e.type, e.name) for e in self.events]

    async def wait_for(self, count: int, within: float = 20) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.events) >= count), within)


async def wait_until(condition: Callable[[], bool], within: float = 20) -> None:
    """Poll a counter the code under test bumps (it has no event to wait on)."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def test_resource_paths() -> None:
    core = KubeResource("", "v1", "services")
    assert core.path("ns", "a b") == "/api/v1/namespaces/ns/services/a%20b"
    assert core.path(None) == "/api/v1/services"
    assert SERVICES.path("x", "y", "status") == f"/apis/{SERVICE_GROUP}/v1/namespaces/x/services/y/status"


async def test_crud_selectors_and_preconditions(kube_client: KubeClient, namespace: str) -> None:
    created = await kube_client.create(SERVICES, namespace, service("a", tier="agent"))
    await kube_client.create(SERVICES, namespace, service("b"))
    with pytest.raises(KubernetesError) as exists:
        await kube_client.create(SERVICES, namespace, service("a"))
    assert exists.value.status == 409 and exists.value.reason == "AlreadyExists"
    items, version = await kube_client.list(SERVICES, namespace, label_selector="tier=agent", page=1)
    assert [i["metadata"]["name"] for i in items] == ["a"] and version.isdigit()
    everything, _ = await kube_client.list(SERVICES, namespace, page=1)  # two pages of one
    assert sorted(i["metadata"]["name"] for i in everything) == ["a", "b"]
    patched = await kube_client.merge_patch(SERVICES, namespace, "a", {"metadata": {"labels": {"x": "1"}}})
    assert patched["metadata"]["labels"] == {"tier": "agent", "x": "1"}
    with pytest.raises(KubernetesError) as stale:
        await kube_client.delete(
            SERVICES, namespace, "a", resource_version=created["metadata"]["resourceVersion"]
        )
    assert stale.value.status == 409
    assert await kube_client.delete(SERVICES, namespace, "a") is not None
    assert await kube_client.delete(SERVICES, namespace, "a") is None
    assert await kube_client.get(SERVICES, namespace, "a") is None


async def test_unreachable_server_is_a_kubernetes_error(kube: KubeApiServer, tmp_path: Any) -> None:
    from tests.servers import free_port

    from ._apiserver import write_kubeconfig

    config = tmp_path / "kubeconfig"
    write_kubeconfig(config, f"https://127.0.0.1:{free_port()}", kube.certs)
    async with await KubeClient.connect(kubeconfig=config, request_timeout=2) as client:
        with pytest.raises(KubernetesError, match="could not be reached") as failed:
            await client.list(SERVICES, "default")
    assert failed.value.status is None


async def test_informer_reports_every_change_in_order(kube_client: KubeClient, namespace: str) -> None:
    await kube_client.create(SERVICES, namespace, service("before"))
    recorder = Recorder()
    async with KubeInformer(kube_client, SERVICES, namespace, recorder, watch_timeout=2) as informer:
        assert recorder.seen() == [("ADDED", "before")]
        await kube_client.create(SERVICES, namespace, service("new"))
        await kube_client.merge_patch(SERVICES, namespace, "before", {"spec": {"ports": [{"port": 81}]}})
        await kube_client.delete(SERVICES, namespace, "new")
        await recorder.wait_for(4)
        watches = informer.watches
        await wait_until(lambda: informer.watches > watches)  # the server ended a watch (2 s)...
        assert recorder.seen() == [
            ("ADDED", "before"),
            ("ADDED", "new"),
            ("MODIFIED", "before"),
            ("DELETED", "new"),
        ]
        assert set(informer.objects) == {(namespace, "before")}  # ...and nothing was repeated


async def test_informer_keeps_its_version_fresh_with_bookmarks(
    kube_client: KubeClient, namespace: str
) -> None:
    recorder = Recorder()
    async with KubeInformer(kube_client, SERVICES, namespace, recorder, watch_timeout=3) as informer:
        start = int(informer.resource_version)
        # Changes elsewhere advance the cluster's version; bookmarks carry it to this watch.
        for i in range(3):
            await kube_client.create(SERVICES, namespace + "-other", service(f"s{i}"))
        other, _ = await kube_client.list(SERVICES, namespace + "-other")
        newest = max(int(o["metadata"]["resourceVersion"]) for o in other)
        assert await informer.wait_for_version(str(newest), 30)
        assert int(informer.resource_version) >= newest > start
        assert recorder.events == []


@pytest.mark.slow
@pytest.mark.restarts_fixture_processes("the session's API server and etcd, restarted here")
async def test_expired_watch_relists_without_losing_or_repeating(
    kube: KubeApiServer, kube_client: KubeClient, namespace: str
) -> None:
    for name in ("kept", "changed", "removed"):
        await kube_client.create(SERVICES, namespace, service(name))
    recorder = Recorder()
    informer = KubeInformer(kube_client, SERVICES, namespace, recorder, backoff=0.05, max_backoff=0.5)
    await informer.start()
    await recorder.wait_for(3)
    await informer.aclose()
    # While this informer is away: changes, then an API-server restart, whose fresh watch
    # cache starts after them, so resuming from the old version is answered 410 Gone.
    await kube_client.create(SERVICES, namespace, service("added"))
    await kube_client.merge_patch(SERVICES, namespace, "changed", {"spec": {"ports": [{"port": 82}]}})
    await kube_client.delete(SERVICES, namespace, "removed")
    await asyncio.to_thread(kube.restart_apiserver)
    await informer.start()
    try:
        await recorder.wait_for(6)
        assert informer.relists >= 1
        assert sorted(recorder.seen()[3:]) == [
            ("ADDED", "added"),
            ("DELETED", "removed"),
            ("MODIFIED", "changed"),
        ]
        assert set(informer.objects) == {(namespace, n) for n in ("kept", "changed", "added")}
        await kube_client.create(SERVICES, namespace, service("after"))
        await recorder.wait_for(7)
        assert recorder.seen()[6:] == [("ADDED", "after")]
    finally:
        await informer.aclose()


@pytest.mark.slow
@pytest.mark.restarts_fixture_processes("the session's API server and etcd, restarted here")
async def test_informer_survives_api_server_and_etcd_restarts(
    kube: KubeApiServer, kube_client: KubeClient, namespace: str
) -> None:
    recorder = Recorder()
    async with KubeInformer(kube_client, SERVICES, namespace, recorder, backoff=0.05, max_backoff=0.5):
        await asyncio.to_thread(kube.restart_apiserver)
        await kube_client.create(SERVICES, namespace, service("one"))
        await recorder.wait_for(1)
        await asyncio.to_thread(kube.restart_etcd)
        for _ in range(100):  # the apiserver reconnects to etcd on its own
            try:
                await kube_client.create(SERVICES, namespace, service("two"))
                break
            except KubernetesError:
                await asyncio.sleep(0.1)
        await recorder.wait_for(2)
        assert recorder.seen() == [("ADDED", "one"), ("ADDED", "two")]
