"""The issue's 'done when': a signed agent registers, is found, and is called by a member of its
group over every binding with mutual TLS, through a directory that requires signatures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.servers import running_directory
from wot_agents import (
    AccessPolicy,
    AgentIdentity,
    DirectoryClient,
    DirectoryError,
    GroupClient,
    Membership,
    TrustPolicy,
    consume,
)
from wot_agents.bindings import CertificateAuth
from wot_agents.bindings.mqtt import LocalBroker
from wot_agents.trust import LocalCA

from .conftest import make_agent


async def test_signed_agent_found_and_called_by_a_group_member_over_mtls(tmp_path: Path) -> None:
    agent_id, member, owner = AgentIdentity.generate(), AgentIdentity.generate(), AgentIdentity.generate()
    ca = LocalCA.create(tmp_path / "ca")
    agent_tls, member_tls = ca.issue("agent", did=agent_id.did), ca.issue("member", did=member.did)
    async with (
        running_directory(require_signatures=True, trusted_issuers=[agent_id.did]) as directory,
        LocalBroker(tls=ca.issue("broker")) as broker,
    ):
        async with GroupClient(directory, owner) as groups:
            await groups.create("ops", [member.did])
        async with aiohttp.ClientSession() as http, http.get(f"{directory}/groups") as response:
            authority = (await response.json())["authority"]
        access = AccessPolicy(rules={"add": {"group:ops"}}, authorities={authority}, directory=directory)
        agent = make_agent()
        async with agent.serve(
            http=True,
            ws=True,
            mqtt=broker.url,
            tls=agent_tls,
            security=CertificateAuth(),  # any certificate of the CA; 'add' only for group ops
            access=access,
            identity=agent_id,
            directory=directory,
        ):
            async with DirectoryClient(directory) as client, asyncio.timeout(10):
                while True:  # registered in the background by serve(directory=...)
                    try:
                        td = await client.get(agent.id)
                        break
                    except DirectoryError:
                        await asyncio.sleep(0.05)
            trust = TrustPolicy(trusted={agent_id.did})
            assert await trust.check(td) == [agent_id.did]
            async with Membership(directory, member, "ops") as ops:
                for scheme in ("https", "wss", "mqtts"):
                    async with consume(
                        td, credentials=ops, tls=member_tls, trust=trust, prefer=[scheme]
                    ) as thing:
                        assert await thing.invoke_action("add", {"a": 20, "b": 22}) == 42, scheme
            # The same call without the group: refused by the agent, on the wire.
            async with consume(td, tls=member_tls, trust=trust, prefer=["https"]) as thing:
                with pytest.raises(Exception, match="membership_sc"):
                    await thing.invoke_action("add", {"a": 1})
