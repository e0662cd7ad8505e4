"""LMOS channels in the runtime: YAML files resolved against the directory's agents, and canaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runtime import Runtime, RuntimeSettings

from .conftest import Deployment, body, chat_agent
from .test_chat import post

CHANNELS = """
apiVersion: "lmos.eclipse/v1"
kind: "Channel"
metadata:
  name: "acme-web-stable"
  labels: {tenant: "acme", channel: "web", subset: "stable", version: "1.0.0"}
spec:
  requiredCapabilities:
    - id: "urn:test:capability:weather"
      version: "^1.0"
    - name: "billing"
      version: ">=1.0.0"
      strategy: HIGHEST
---
apiVersion: "lmos.eclipse/v1"
kind: "Channel"
metadata:
  name: "acme-web-canary"
  labels: {tenant: "acme", channel: "web", subset: "canary", version: "1.1.0"}
spec:
  requiredCapabilities:
    - id: "urn:test:capability:weather"
      version: "[2.0,3.0)"
    - id: "urn:test:capability:billing"
      version: "1.x"
---
apiVersion: "lmos.eclipse/v1"
kind: "ChannelRollout"
metadata:
  name: "acme-web-rollout"
  labels: {tenant: "acme", channel: "web"}
spec:
  strategy:
    canary:
      stableChannel: {name: "acme-web-stable", weight: 90}
      canaryChannel: {name: "acme-web-canary", weight: 10}
"""


@pytest.fixture
async def channelled(deployment: Deployment, tmp_path: Path) -> Deployment:
    (tmp_path / "channels.yaml").write_text(CHANNELS)
    await deployment.add(chat_agent("weather", version="1.2.0"), http=True)
    await deployment.add(
        chat_agent("weather", agent_id="urn:test:agent:weather-v2", version="2.1.0"), ws=True
    )
    await deployment.add(chat_agent("billing", version="1.4.0"), http=True)
    await deployment.add(chat_agent("travel"), http=True)  # provides nothing the channels require
    await deployment.start(channels=[str(tmp_path / "channels.yaml")])
    return deployment


async def get(http: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, Any]:
    async with http.get(url, headers=headers) as reply:
        return reply.status, await reply.json()


async def test_channel_routing_is_the_candidate_set(
    channelled: Deployment, http: aiohttp.ClientSession
) -> None:
    base = f"{channelled.url}/apis/v1/tenants/acme/channels"
    status, listed = await get(http, base)
    assert status == 200
    assert sorted(channel["metadata"]["name"] for channel in listed) == ["acme-web-canary", "acme-web-stable"]
    assert all(channel["status"]["resolveStatus"] == "RESOLVED" for channel in listed)
    status, routing = await get(http, f"{base}/web/routing")
    assert status == 200 and routing["kind"] == "ChannelRouting"
    groups = {group["id"]: group for group in routing["spec"]["capabilityGroups"]}
    assert set(groups) == {"urn:test:agent:weather", "urn:test:agent:billing"}
    assert groups["urn:test:agent:weather"]["capabilities"][0]["providedVersion"] == "1.2.0"
    assert groups["urn:test:agent:weather"]["capabilities"][0]["requiredVersion"] == "^1.0"
    status, canary = await get(http, f"{base}/web/routing", **{"x-subset": "canary"})
    assert [group["id"] for group in canary["spec"]["capabilityGroups"]] == [
        "urn:test:agent:weather-v2",
        "urn:test:agent:billing",
    ]
    status, missing = await get(http, f"{base}/ivr/routing")
    assert status == 404 and "ivr" in missing["error"]
    status, agents = await get(http, f"{channelled.url}/apis/v1/agents?tenantId=acme&channelId=web")
    assert sorted(agent["id"] for agent in agents["agents"]) == [
        "urn:test:agent:billing",
        "urn:test:agent:weather",
    ]
    # The travel agent serves acme's web channel by its own declaration, but no Channel wires it in.
    status, reply = await post(
        http, channelled.url, body("a flight", explicit="TravelAgent"), conversation="c1"
    )
    assert (status, reply["errorCode"]) == (404, "AGENT_NOT_FOUND")
    status, reply = await post(
        http, channelled.url, body("rain?"), headers={"x-subset": "canary"}, conversation="c1"
    )
    assert (status, reply["agent"]["id"], reply["routing"]["subset"]) == (
        200,
        "urn:test:agent:weather-v2",
        "canary",
    )


async def test_a_channel_stops_resolving_when_an_agent_leaves_and_resolves_when_it_returns(
    channelled: Deployment, http: aiohttp.ClientSession
) -> None:
    routing_url = f"{channelled.url}/apis/v1/tenants/acme/channels/web/routing"
    billing = channelled.agents["urn:test:agent:billing"].description.to_dict()
    await channelled.remove("urn:test:agent:billing")
    await channelled.wait_for(3)
    status, routing = await get(http, routing_url)
    assert status == 200
    assert routing["status"]["resolveStatus"] == "UNRESOLVED"
    assert routing["status"]["unresolvedRequiredCapabilities"] == [
        {"name": "billing", "version": ">=1.0.0", "strategy": "HIGHEST"}
    ]
    assert routing["status"]["servingLastResolved"] is True
    # It keeps serving its last resolved routing: the weather agent still answers.
    status, reply = await post(http, channelled.url, body("will it rain tomorrow?", explicit="WeatherAgent"))
    assert (status, reply["agent"]["id"]) == (200, "urn:test:agent:weather")
    status, channel = await get(http, f"{channelled.url}/lmos/runtime/apis/v1/tenants/acme/channels/web")
    assert channel["status"]["resolveStatus"] == "UNRESOLVED"
    from wot_agents import DirectoryClient

    async with DirectoryClient(channelled.directory) as client:
        await client.register(billing)
    await channelled.wait_for(4)
    status, routing = await get(http, routing_url)
    assert routing["status"] == {"resolveStatus": "RESOLVED"}
    assert len(routing["spec"]["capabilityGroups"]) == 2


async def test_the_canary_splits_conversations_by_weight_and_keeps_each_one(
    channelled: Deployment, http: aiohttp.ClientSession
) -> None:
    runtime = channelled.runtime
    assert runtime is not None
    subsets = [runtime.subset_for("acme", "web", f"conversation-{n}", None) for n in range(10_000)]
    assert 0.08 <= subsets.count("canary") / len(subsets) <= 0.12
    assert set(subsets) == {"stable", "canary"}
    canary = next(n for n, subset in enumerate(subsets) if subset == "canary")
    stable = next(n for n, subset in enumerate(subsets) if subset == "stable")
    for turn in range(2):  # sticky: the same conversation stays on its side, turn after turn
        for conversation, expected in (
            (canary, "urn:test:agent:weather-v2"),
            (stable, "urn:test:agent:weather"),
        ):
            status, reply = await post(
                http,
                channelled.url,
                body("will it rain this weekend?"),
                conversation=f"conversation-{conversation}",
                turn=f"t{turn}",
            )
            assert (status, reply["agent"]["id"]) == (200, expected), reply
    # x-subset given by the client wins over the rollout.
    status, reply = await post(
        http,
        channelled.url,
        body("rain?"),
        conversation=f"conversation-{canary}",
        headers={"x-subset": "stable"},
    )
    assert (status, reply["agent"]["id"]) == (200, "urn:test:agent:weather")


async def test_bad_channel_files_stop_the_runtime_with_the_file_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(CHANNELS.replace('version: "1.x"', 'version: ">=one"'))
    with pytest.raises(ValueError, match=r"broken\.yaml.*acme-web-canary"):
        async with Runtime(RuntimeSettings(channels=[str(broken)], router="explicit", mdns=False)):
            pass
    dangling = tmp_path / "dangling.yaml"
    dangling.write_text(CHANNELS.replace('name: "acme-web-canary", weight', 'name: "acme-web-beta", weight'))
    with pytest.raises(ValueError, match="acme-web-beta"):
        async with Runtime(RuntimeSettings(channels=[str(dangling)], router="explicit", mdns=False)):
            pass
