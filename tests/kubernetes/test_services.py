"""Agents deployed as Services appear in the directory and disappear with their Service.

The Services are objects of a Service-shaped CRD (this API server has no core API); their
cluster IP is 127.0.0.1, where a real HTTP server serves each agent's TD.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from discovery._kubernetes import ServiceWatcher, service_td_url
from tests.servers import running_directory
from wot_agents import DirectoryClient, KubeClient, KubeResource

from .conftest import SERVICE_GROUP

SERVICES = KubeResource(SERVICE_GROUP, "v1", "services", "Service")
EXAMPLE = json.loads((Path(__file__).parents[2] / "examples" / "weather-agent.json").read_text())


@asynccontextmanager
async def agent_server(documents: dict[str, Any]) -> AsyncIterator[int]:
    """A real HTTP server answering each path of ``documents`` with that JSON body."""

    async def handle(request: web.Request) -> web.Response:
        if request.path not in documents:
            raise web.HTTPNotFound()
        body = documents[request.path]
        return web.Response(body=body if isinstance(body, bytes) else json.dumps(body).encode(),
                            content_type="application/td+json")  # fmt: skip

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


def service(
    name: str, port: int, labels: dict[str, str], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": SERVICES.api_version,
        "kind": "Service",
        "metadata": {"name": name, "labels": labels, "annotations": annotations or {}},
        "spec": {
            "clusterIP": "127.0.0.1",
            "ports": [{"name": "metrics", "port": 9}, {"name": "http", "port": port}],
        },
    }


async def eventually(check: Callable[[], Any], within: float = 20) -> None:
    """Wait until the async ``check`` returns true (the watcher works in the background)."""
    async with asyncio.timeout(within):
        while not await check():  # noqa: ASYNC110 - polls another process (the directory)
            await asyncio.sleep(0.05)


def td(thing_id: str, title: str) -> dict[str, Any]:
    return {**EXAMPLE, "id": thing_id, "title": title}


def test_service_td_url_follows_annotations_and_ports() -> None:
    svc = service("weather", 8080, {})
    assert service_td_url(svc) == "http://127.0.0.1:8080/.well-known/wot"
    svc["metadata"]["annotations"] = {"wot-agents.io/port": "metrics", "wot-agents.io/td-path": "/td"}
    assert service_td_url(svc) == "http://127.0.0.1:9/td"
    svc["metadata"]["annotations"] = {"wot-agents.io/scheme": "https"}
    assert service_td_url(svc).startswith("https://")
    svc["spec"]["clusterIP"] = "None"
    svc["metadata"]["namespace"] = "agents"
    assert service_td_url(svc) == "https://weather.agents.svc.cluster.local:8080/.well-known/wot"
    svc["spec"]["clusterIP"] = "fd00::1"
    assert service_td_url(svc).startswith("https://[fd00::1]:8080/")
    for bad, message in (
        ({"wot-agents.io/port": "grpc"}, "names no port"),
        ({"wot-agents.io/scheme": "ftp"}, "only http and https"),
        ({"wot-agents.io/td-path": "td"}, "absolute path"),
    ):
        svc["metadata"]["annotations"] = bad
        with pytest.raises(ValueError, match=message):
            service_td_url(svc)


async def test_service_agents_appear_and_disappear(kube_client: KubeClient, namespace: str) -> None:
    documents = {
        "/.well-known/wot": td("urn:test:svc:weather", "Weather"),
        "/lmos/td": td("urn:test:svc:billing", "Billing"),
        "/broken": {"title": "no TD"},
    }
    async with (
        agent_server(documents) as port,
        running_directory(purge_interval=0.2) as url,
        DirectoryClient(url) as directory,
        ServiceWatcher(
            kube_client, directory, namespace=namespace, kind=SERVICES, ttl=30, retry_initial=0.05
        ),
    ):
        await kube_client.create(
            SERVICES, namespace, service("weather", port, {"wot-agents.io/agent": "true"})
        )
        await kube_client.create(
            SERVICES,
            namespace,
            service("billing", port, {"lmos-agent": "true"}, {"wot-agents.io/td-path": "/lmos/td"}),
        )
        await kube_client.create(SERVICES, namespace, service("unlabelled", port, {}))
        await kube_client.create(
            SERVICES,
            namespace,
            service("broken", port, {"lmos-agent": "true"}, {"wot-agents.io/td-path": "/broken"}),
        )
        await eventually(lambda: directory_has(directory, {"urn:test:svc:weather", "urn:test:svc:billing"}))
        assert (await directory.get("urn:test:svc:billing"))["title"] == "Billing"
        # The broken one is retried for as long as it exists; fixed, it appears.
        await kube_client.merge_patch(
            SERVICES, namespace, "broken", {"metadata": {"annotations": {"wot-agents.io/td-path": "/ok"}}}
        )
        documents["/ok"] = td("urn:test:svc:fixed", "Fixed")
        await eventually(
            lambda: directory_has(
                directory, {"urn:test:svc:weather", "urn:test:svc:billing", "urn:test:svc:fixed"}
            )
        )
        await kube_client.delete(SERVICES, namespace, "weather")
        await kube_client.merge_patch(
            SERVICES, namespace, "billing", {"metadata": {"labels": {"lmos-agent": None}}}
        )
        await eventually(lambda: directory_has(directory, {"urn:test:svc:fixed"}))


async def directory_has(directory: DirectoryClient, ids: set[str]) -> bool:
    return {td["id"] async for td in directory.list()} == ids


async def test_two_replicas_converge_on_service_add_and_remove(
    kube: Any, kube_client: KubeClient, namespace: str
) -> None:
    """Each replica runs the duties; the Lease holder mirrors, and both serve the result."""
    from registry import DIRECTORY, ClusterDuties

    from .test_store import replica

    async with agent_server({"/.well-known/wot": td("urn:test:svc:shared", "Shared")}) as port:
        async with (
            replica(kube, namespace) as (url_a, app_a),
            replica(kube, namespace) as (url_b, app_b),
            ClusterDuties(kube_client, app_a[DIRECTORY], url_a, namespace=namespace, channels=False,
                          kind=SERVICES, lease_seconds=5, renew_every=0.5),
            ClusterDuties(kube_client, app_b[DIRECTORY], url_b, namespace=namespace, channels=False,
                          kind=SERVICES, lease_seconds=5, renew_every=0.5),
            DirectoryClient(url_a) as a,
            DirectoryClient(url_b) as b,
        ):  # fmt: skip
            await kube_client.create(
                SERVICES, namespace, service("shared", port, {"wot-agents.io/agent": "true"})
            )
            await eventually(lambda: directory_has(a, {"urn:test:svc:shared"}))
            await eventually(lambda: directory_has(b, {"urn:test:svc:shared"}))
            await kube_client.delete(SERVICES, namespace, "shared")
            await eventually(lambda: directory_has(a, set()))
            await eventually(lambda: directory_has(b, set()))
