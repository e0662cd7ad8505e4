"""The kubernetes store: directories over the real API server, as replicas of one another.

Each test has a namespace of its own; every replica is a directory app with its own
:class:`KubernetesStore` (its own client, watch and indexes) on that namespace.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from registry import DIRECTORY, DirectorySettings, create_app
from registry._kubernetes import THING_DESCRIPTIONS, KubernetesStore, label_safe, object_name, td_labels
from wot_agents import DirectoryClient, DirectoryError, DirectoryEvent, KubeClient

from ._apiserver import KubeApiServer


@asynccontextmanager
async def replica(
    kube: KubeApiServer, namespace: str, **settings: Any
) -> AsyncIterator[tuple[str, web.Application]]:
    """A directory on the kubernetes backend, served on a free loopback port."""
    store = KubernetesStore(namespace=namespace, kubeconfig=kube.kubeconfig)
    app = create_app(DirectorySettings(**settings), store=store)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()


async def take(events: AsyncIterator[DirectoryEvent], count: int, within: float = 20) -> list[DirectoryEvent]:
    async with asyncio.timeout(within):
        return [await anext(events) for _ in range(count)]


def summary(events: list[DirectoryEvent]) -> list[tuple[str, str | None, str]]:
    return [(e.type, e.id, e.data["id"]) for e in events]


def test_label_safe_values_and_names() -> None:
    assert label_safe("acme") == "acme"
    encoded = label_safe("lmos:Agent")
    assert encoded.startswith("lmos_Agent-") and encoded != label_safe("lmos_Agent")
    assert len(label_safe("x" * 200)) <= 63 and label_safe("::").startswith("h-")
    assert object_name("urn:a") != object_name("urn:b") and len(object_name("urn:a")) == 43
    labels = td_labels(
        {"@type": ["lmos:Agent", "Thing"], "lmos:supportedTenants": ["Acme"], "lmos:subset": "Stable"}
    )
    assert labels[f"type.wot-agents.io/{label_safe('lmos:Agent')}"] == "true"
    assert labels["type.wot-agents.io/Thing"] == "true"
    assert labels["tenant.wot-agents.io/acme"] == "true" and labels["wot-agents.io/subset"] == "stable"


async def test_descriptions_are_custom_resources_with_labels(
    kube: KubeApiServer, kube_client: KubeClient, namespace: str, make_td: Any
) -> None:
    async with replica(kube, namespace) as (url, _), DirectoryClient(url) as client:
        await client.register(make_td(id="urn:k8s:weather"))
        obj = await kube_client.get(THING_DESCRIPTIONS, namespace, object_name("urn:k8s:weather"))
        assert obj is not None and obj["spec"]["id"] == "urn:k8s:weather"
        # The API server filters by the labels: by tenant, and by @type.
        found, _ = await kube_client.list(
            THING_DESCRIPTIONS, namespace, label_selector="tenant.wot-agents.io/acme"
        )
        assert [o["spec"]["id"] for o in found] == ["urn:k8s:weather"]
        selector = f"type.wot-agents.io/{label_safe('lmos:Agent')}=true"
        assert len((await kube_client.list(THING_DESCRIPTIONS, namespace, label_selector=selector))[0]) == 1
        none, _ = await kube_client.list(
            THING_DESCRIPTIONS, namespace, label_selector="tenant.wot-agents.io/other"
        )
        assert none == []
        stored = await client.get("urn:k8s:weather")
        assert stored["registration"]["created"] and stored["title"] == make_td()["title"]


async def test_a_description_too_large_for_etcd_gets_413(
    kube: KubeApiServer, kube_client: KubeClient, namespace: str, make_td: Any, http: aiohttp.ClientSession
) -> None:
    async with replica(kube, namespace, max_body=8 * 1024 * 1024) as (url, _):
        td = make_td(id="urn:k8s:huge", description="x" * (1100 * 1024))
        body = io.BytesIO(json.dumps(td).encode())
        headers = {"Content-Type": "application/td+json"}
        async with http.put(f"{url}/things/urn:k8s:huge", data=body, headers=headers) as answer:
            assert answer.status == 413 and answer.content_type == "application/problem+json"
            assert "limit" in (await answer.json())["detail"]
        async with http.get(f"{url}/things/urn:k8s:huge") as answer:
            assert answer.status == 404
        assert (await kube_client.list(THING_DESCRIPTIONS, namespace))[0] == []


async def test_two_replicas_see_every_write_with_the_same_event_ids(
    kube: KubeApiServer, namespace: str, make_td: Any
) -> None:
    async with (
        replica(kube, namespace) as (url_a, _),
        replica(kube, namespace) as (url_b, _),
        DirectoryClient(url_a) as a,
        DirectoryClient(url_b) as b,
    ):
        await a.register(make_td(id="urn:k8s:one"))
        await b.register(make_td(id="urn:k8s:two"))
        await a.patch("urn:k8s:two", {"title": "Two"})
        await b.delete("urn:k8s:one")
        # Each replica's journal holds what its watch saw since it started: the same four changes.
        seen_a = summary(await take(a.events(last_event_id="0", diff=True), 4))
        seen_b = summary(await take(b.events(last_event_id="0", diff=True), 4))
        assert seen_a == seen_b
        assert [(kind, thing) for kind, _, thing in seen_a] == [
            ("thing_created", "urn:k8s:one"),
            ("thing_created", "urn:k8s:two"),
            ("thing_updated", "urn:k8s:two"),
            ("thing_deleted", "urn:k8s:one"),
        ]
        ids = [int(event_id or 0) for _, event_id, _ in seen_a]
        assert ids == sorted(ids) and len(set(ids)) == 4
        assert (await b.get("urn:k8s:two"))["title"] == "Two" == (await a.get("urn:k8s:two"))["title"]
        assert await a.count() == await b.count() == 1


async def test_last_event_id_resumes_on_another_replica(
    kube: KubeApiServer, namespace: str, make_td: Any
) -> None:
    async with replica(kube, namespace) as (url_a, _), replica(kube, namespace) as (url_b, _):
        async with DirectoryClient(url_a) as a, DirectoryClient(url_b) as b:
            for n in range(4):
                await a.register(make_td(id=f"urn:k8s:{n}"))
            first_two = await take(a.events(last_event_id="0", reconnect=False), 2)
            # The client's connection to A drops; it reconnects to B with the last id it got.
            rest = await take(b.events(last_event_id=first_two[-1].id, reconnect=False), 2)
            assert [e.data["id"] for e in first_two + rest] == [f"urn:k8s:{n}" for n in range(4)]
            # A replica started after the changes answers from the API server's history.
            async with replica(kube, namespace) as (url_c, _), DirectoryClient(url_c) as c:
                late = await take(c.events(last_event_id=first_two[0].id, reconnect=False), 3)
            assert summary(late) == summary((first_two + rest)[1:])


async def test_expired_registrations_are_purged_once_across_replicas(
    kube: KubeApiServer, namespace: str, make_td: Any
) -> None:
    async with (
        replica(kube, namespace, purge_interval=0.1) as (url_a, _),
        replica(kube, namespace, purge_interval=0.1) as (url_b, _),
        DirectoryClient(url_a) as a,
        DirectoryClient(url_b) as b,
    ):
        await a.register(make_td(id="urn:k8s:short"), ttl=1)
        await a.register(make_td(id="urn:k8s:long"), ttl=3600)
        events = b.events(last_event_id="0")
        seen = summary(await take(events, 3))
        assert [(kind, thing) for kind, _, thing in seen] == [
            ("thing_created", "urn:k8s:short"),
            ("thing_created", "urn:k8s:long"),
            ("thing_deleted", "urn:k8s:short"),
        ]
        assert [td["id"] async for td in a.list()] == ["urn:k8s:long"] == [td["id"] async for td in b.list()]


@pytest.mark.slow
@pytest.mark.restarts_fixture_processes("the session's API server and etcd, restarted here")
async def test_an_expired_watch_relists_without_losing_or_repeating(
    kube: KubeApiServer, namespace: str, make_td: Any
) -> None:
    async with (
        replica(kube, namespace) as (url_a, _),
        replica(kube, namespace) as (url_b, app_b),
        DirectoryClient(url_a) as a,
        DirectoryClient(url_b) as b,
    ):
        for name in ("kept", "changed", "removed"):
            await a.register(make_td(id=f"urn:k8s:{name}"))
        informer = app_b[DIRECTORY].store._informer  # type: ignore[attr-defined]
        a_version = (await take(a.events(last_event_id="0", reconnect=False), 3))[-1].id or ""
        assert await informer.wait_for_version(a_version, 20)
        await informer.aclose()  # replica B stops watching for a while
        await a.register(make_td(id="urn:k8s:added"))
        await a.patch("urn:k8s:changed", {"title": "Changed"})
        await a.delete("urn:k8s:removed")
        await asyncio.to_thread(kube.restart_apiserver)  # its watch cache now starts after them
        await informer.start()  # resumes from its old version: 410 Gone, then a re-list
        events = b.events(last_event_id=a_version, diff=True)
        missed = await take(events, 3)
        assert informer.relists == 1
        assert sorted((e.type, e.data["id"]) for e in missed) == [
            ("thing_created", "urn:k8s:added"),
            ("thing_deleted", "urn:k8s:removed"),
            ("thing_updated", "urn:k8s:changed"),
        ]
        assert sorted([td["id"] async for td in b.list()]) == sorted([td["id"] async for td in a.list()])
        assert (await b.get("urn:k8s:changed"))["title"] == "Changed"
        await a.register(make_td(id="urn:k8s:after"))
        assert [e.data["id"] for e in await take(events, 1)] == ["urn:k8s:after"]


@pytest.mark.slow
@pytest.mark.restarts_fixture_processes("the session's API server and etcd, restarted here")
async def test_replicas_survive_api_server_and_etcd_restarts(
    kube: KubeApiServer, namespace: str, make_td: Any
) -> None:
    async with (
        replica(kube, namespace) as (url_a, _),
        replica(kube, namespace) as (url_b, _),
        DirectoryClient(url_a) as a,
        DirectoryClient(url_b) as b,
    ):
        await a.register(make_td(id="urn:k8s:before"))
        for restart in (kube.restart_apiserver, kube.restart_etcd):
            await asyncio.to_thread(restart)
            thing_id = f"urn:k8s:after-{restart.__name__}"
            async with asyncio.timeout(30):
                while True:  # a write while the API server reconnects to etcd gets 503: retried
                    try:
                        await a.register(make_td(id=thing_id))
                        break
                    except DirectoryError as exc:
                        assert exc.status == 503, exc
                        await asyncio.sleep(0.1)
            events = b.events(last_event_id="0")
            seen = [e.data["id"] for e in await take(events, 2 if restart == kube.restart_apiserver else 3)]
            assert seen[-1] == thing_id
        ids = {td["id"] async for td in b.list()}
        assert ids == {"urn:k8s:before", "urn:k8s:after-restart_apiserver", "urn:k8s:after-restart_etcd"}
