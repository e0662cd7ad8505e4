"""LMOS channels in the runtime: YAML files resolved against the directory's agents, and canaries."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from runtime import ChannelTable, Runtime, RuntimeSettings
from tests.agents import Deployment, body, chat_agent, post

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


async def test_channel_files_are_reloaded_when_they_change_and_a_broken_edit_keeps_the_last_good_ones(
    deployment: Deployment, http: aiohttp.ClientSession, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stable = CHANNELS.split("---")[0]
    path = tmp_path / "channels.yaml"
    path.write_text(stable)
    await deployment.add(chat_agent("weather", version="1.2.0"), http=True)
    await deployment.add(
        chat_agent("weather", agent_id="urn:test:agent:weather-v2", version="2.1.0"), ws=True
    )
    await deployment.add(chat_agent("billing", version="1.4.0"), http=True)
    url = await deployment.start(channels=[str(path)], channels_poll_interval=0.05)
    assert deployment.runtime is not None
    table = deployment.runtime.channels
    base = f"{url}/apis/v1/tenants/acme/channels"

    async def weather_of_routing() -> str | None:
        status, routing = await get(http, f"{base}/web/routing")
        groups = [group["id"] for group in routing["spec"]["capabilityGroups"]] if status == 200 else []
        return next((group for group in groups if "weather" in group), None)

    def wired(table: ChannelTable) -> list[str]:
        return table.candidate_ids("acme", "web", "stable") or []

    assert await weather_of_routing() == "urn:test:agent:weather"
    # An edit: the stable channel now wants weather 2.x; it resolves again against the agents.
    path.write_text(stable.replace('version: "^1.0"', 'version: "[2.0,3.0)"'))
    async with asyncio.timeout(20):
        await table.wait_for(lambda table: "urn:test:agent:weather-v2" in wired(table))
    assert await weather_of_routing() == "urn:test:agent:weather-v2"
    status, reply = await post(http, url, body("will it rain tomorrow?", explicit="WeatherAgent"))
    assert (status, reply["agent"]["id"]) == (200, "urn:test:agent:weather-v2"), reply

    # Broken edits: bad YAML, then a resource the table refuses, then the file gone. Each keeps
    # the last good channels serving and says why in their status; the runtime keeps answering.
    for turn, (broken, why) in enumerate(
        (
            ("kind: Channel\nmetadata: [unclosed", "expected ',' or ']'"),
            (stable + "---\n" + stable, "two Channels for tenant 'acme', channel 'web'"),
            (None, "No such file or directory"),
        )
    ):
        if broken is None:
            path.unlink()
        else:
            path.write_text(broken)
        async with asyncio.timeout(20):
            await table.wait_for(lambda table: why in (table.reload_error or ""))  # noqa: B023
        status, listed = await get(http, base)
        assert status == 200 and why in listed[0]["status"]["reloadError"]
        assert await weather_of_routing() == "urn:test:agent:weather-v2"
        status, reply = await post(http, url, body("rain?", explicit="WeatherAgent"), turn=f"t{turn}")
        assert (status, reply["agent"]["id"]) == (200, "urn:test:agent:weather-v2"), reply
    assert caplog.text.count("the channel files' latest edit was not loaded") == 3  # once each
    async with http.get(f"{url}/metrics") as answer:
        metrics = await answer.text()
    assert 'runtime_channel_reloads_total{outcome="failed"} 3' in metrics
    assert "runtime_channel_reload_failing 1" in metrics

    # Fixed, with a channel more: it serves at once and the error is gone.
    path.write_text(
        stable + "---\n" + stable.replace("acme-web-stable", "acme-ivr").replace('"web"', '"ivr"')
    )
    async with asyncio.timeout(20):
        await table.wait_for(lambda table: table.reload_error is None)
    status, listed = await get(http, base)
    assert sorted(channel["metadata"]["name"] for channel in listed) == ["acme-ivr", "acme-web-stable"]
    assert all("reloadError" not in channel["status"] for channel in listed)
    assert await weather_of_routing() == "urn:test:agent:weather"
