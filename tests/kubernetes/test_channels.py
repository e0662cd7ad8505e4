"""LMOS Channels applied to the cluster get their ChannelRouting and status; one writer at a time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from registry import CHANNEL_ROLLOUTS, CHANNEL_ROUTINGS, CHANNELS, ClusterDuties, Directory, KubernetesStore
from registry._cluster import LEADER_LEASE
from wot_agents import KUBE_LEASES, KubeClient, LeaderElection

from ._apiserver import KubeApiServer

LEASES = KUBE_LEASES


def capability(cap_id: str, version: str) -> dict[str, Any]:
    return {"id": cap_id, "name": cap_id.rsplit(":", 1)[-1], "version": version, "description": cap_id}


def channel(name: str, *required: dict[str, Any], subset: str = "stable") -> dict[str, Any]:
    return {
        "apiVersion": "lmos.eclipse/v1",
        "kind": "Channel",
        "metadata": {"name": name, "labels": {"tenant": "acme", "channel": "web", "subset": subset}},
        "spec": {"requiredCapabilities": list(required)},
    }


@asynccontextmanager
async def replica(kube: KubeApiServer, namespace: str) -> AsyncIterator[tuple[Directory, ClusterDuties]]:
    """A directory on the kubernetes backend with its one-writer duties (channels only)."""
    async with (
        await KubeClient.connect(kubeconfig=kube.kubeconfig) as client,
        Directory(store=KubernetesStore(namespace=namespace, client=client)) as directory,
        ClusterDuties(
            client,
            directory,
            "http://127.0.0.1:9",
            namespace=namespace,
            services=False,
            lease_seconds=2,
            renew_every=0.3,
        ) as duties,
    ):
        yield directory, duties


async def eventually(check: Callable[[], Any], within: float = 30) -> Any:
    """Poll the API server until ``check`` returns something true; return it."""
    async with asyncio.timeout(within):
        while not (found := await check()):  # noqa: ASYNC110 - the operator works in another task
            await asyncio.sleep(0.05)
    return found


async def test_channels_are_resolved_into_routings_and_status(
    kube: KubeApiServer, kube_client: KubeClient, namespace: str, make_td: Any
) -> None:
    async with replica(kube, namespace) as (directory, duties):
        await directory.put(
            "urn:k8s:billing",
            make_td(
                id="urn:k8s:billing",
                title="Billing",
                **{
                    "lmos:capabilities": [
                        capability("urn:c:billing:view", "1.0.0"),
                        capability("urn:c:address", "1.1.0"),
                    ]
                },
            ),
        )
        await directory.put(
            "urn:k8s:other-tenant",
            make_td(
                id="urn:k8s:other-tenant",
                **{
                    "lmos:supportedTenants": ["globex"],
                    "lmos:capabilities": [capability("urn:c:address", "9.0.0")],
                },
            ),
        )
        web = channel(
            "acme-web-stable",
            {"id": "urn:c:billing:view", "version": "1.0.0"},
            {"id": "urn:c:address", "version": ">=1.0.0", "strategy": "HIGHEST"},
        )
        await kube_client.create(CHANNELS, namespace, web)

        async def routing() -> Any:
            return await kube_client.get(CHANNEL_ROUTINGS, namespace, "acme-web-stable")

        found = await eventually(routing)
        assert found["metadata"]["labels"] == web["metadata"]["labels"]
        assert found["metadata"]["ownerReferences"][0]["kind"] == "Channel"
        [group] = found["spec"]["capabilityGroups"]
        assert group["id"] == "urn:k8s:billing" and group["name"] == "Billing"
        wires = {c["id"]: (c["requiredVersion"], c["providedVersion"]) for c in group["capabilities"]}
        assert wires == {"urn:c:billing:view": ("1.0.0", "1.0.0"), "urn:c:address": (">=1.0.0", "1.1.0")}

        async def status(name: str) -> Any:
            obj = await kube_client.get(CHANNELS, namespace, name)
            return (obj or {}).get("status")

        assert (await eventually(lambda: status("acme-web-stable")))["resolveStatus"] == "RESOLVED"

        # Unresolved: the status says what is missing, and no routing is written...
        await kube_client.create(
            CHANNELS, namespace, channel("acme-web-canary", {"id": "urn:c:new"}, subset="canary")
        )
        unresolved = await eventually(lambda: status("acme-web-canary"))
        assert unresolved["resolveStatus"] == "UNRESOLVED"
        assert [c["id"] for c in unresolved["unresolvedRequiredCapabilities"]] == ["urn:c:new"]
        assert await kube_client.get(CHANNEL_ROUTINGS, namespace, "acme-web-canary") is None
        rollout = {
            "apiVersion": "lmos.eclipse/v1",
            "kind": "ChannelRollout",
            "metadata": {"name": "acme-web", "labels": {"tenant": "acme", "channel": "web"}},
            "spec": {
                "strategy": {
                    "canary": {
                        "stableChannel": {"name": "acme-web-stable", "weight": 90},
                        "canaryChannel": {"name": "acme-web-canary", "weight": 10},
                    }
                }
            },
        }
        await kube_client.create(CHANNEL_ROLLOUTS, namespace, rollout)

        async def rollout_status() -> Any:
            obj = await kube_client.get(CHANNEL_ROLLOUTS, namespace, "acme-web")
            return (obj or {}).get("status")

        assert (await eventually(rollout_status))["unresolvedChannels"] == ["acme-web-canary"]
        # ...until an agent of that subset provides it: then it resolves, and so does the rollout.
        await directory.put(
            "urn:k8s:new",
            make_td(
                id="urn:k8s:new",
                **{"lmos:subset": "canary", "lmos:capabilities": [capability("urn:c:new", "2")]},
            ),
        )

        async def resolved_canary() -> Any:
            current = await status("acme-web-canary")
            return current if current and current["resolveStatus"] == "RESOLVED" else None

        assert "unresolvedRequiredCapabilities" not in await eventually(resolved_canary)
        assert await eventually(lambda: kube_client.get(CHANNEL_ROUTINGS, namespace, "acme-web-canary"))

        async def rollout_resolved() -> Any:
            current = await rollout_status()
            return current if current and current["resolveStatus"] == "RESOLVED" else None

        assert "unresolvedChannels" not in await eventually(rollout_resolved)
        # A deleted Channel takes its routing along.
        await kube_client.delete(CHANNELS, namespace, "acme-web-stable")

        async def routing_gone() -> bool:
            return await routing() is None

        await eventually(routing_gone)
        assert duties.election.is_leader


async def test_one_leader_at_a_time_and_a_fast_takeover(kube_client: KubeClient, namespace: str) -> None:
    leading: list[str] = []

    def lead(name: str) -> Callable[[], Any]:
        async def run() -> None:
            leading.append(name)
            try:
                await asyncio.Event().wait()
            finally:
                leading.remove(name)

        return run

    first = LeaderElection(kube_client, namespace, LEADER_LEASE, lead("a"), lease_seconds=10, renew_every=0.2)
    second = LeaderElection(
        kube_client, namespace, LEADER_LEASE, lead("b"), lease_seconds=10, renew_every=0.2
    )
    async with first:

        async def one_leader() -> bool:
            return leading == ["a"]

        await eventually(one_leader)
        async with second:
            for _ in range(10):  # several renew periods: b never leads while a holds the Lease
                await asyncio.sleep(0.2)
                assert leading == ["a"] and not second.is_leader
            await first.aclose()  # releases the Lease: b takes over without waiting for it to expire

            async def b_leads() -> bool:
                return leading == ["b"]

            await eventually(b_leads, within=5)
            lease = await kube_client.get(LEASES, namespace, LEADER_LEASE)
            assert lease is not None and lease["spec"]["holderIdentity"] == second.identity
            assert lease["spec"]["leaseTransitions"] >= 1
