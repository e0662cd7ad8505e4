"""The runtime's trust: forward only to agents whose TDs verify, and call as a group member."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.agents import Deployment, body, chat_agent, post
from wot_agents import AccessPolicy, AgentIdentity, GroupClient


async def test_the_runtime_forwards_only_to_signed_agents_and_calls_as_a_member(
    deployment: Deployment, tmp_path: Path
) -> None:
    signer, owner = AgentIdentity.generate(), AgentIdentity.generate()
    runtime_key = tmp_path / "runtime.key"
    runtime_did = AgentIdentity.load_or_create(runtime_key).did
    async with GroupClient(deployment.directory, owner) as groups:
        await groups.create("front-door", [runtime_did])
    async with aiohttp.ClientSession() as http, http.get(f"{deployment.directory}/groups") as response:
        authority = (await response.json())["authority"]
    access = AccessPolicy(rules={"chat": {"group:front-door"}}, authorities={authority})
    await deployment.add(chat_agent("weather"), http=True, identity=signer, access=access)
    await deployment.add(chat_agent("billing"), http=True)  # unsigned
    url = await deployment.start(
        require_signatures=True,
        trusted_issuers=[signer.did],
        identity=str(runtime_key),
        group="front-door",
    )
    async with aiohttp.ClientSession() as http:
        status, reply = await post(http, url, body("will it rain?", explicit="WeatherAgent"))
        assert status == 200, reply
        status, reply = await post(http, url, body("my bill", explicit="urn:test:agent:billing"))
    assert status == 502 and reply["errorCode"] == "AGENT_CLIENT_EXCEPTION"
    assert "not signed" in reply["message"]
