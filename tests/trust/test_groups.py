"""Agent groups in the directory, membership credentials, and who may call which affordance."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.servers import running_directory
from wot_agents import (
    AccessDenied,
    AccessPolicy,
    AgentIdentity,
    ClientPool,
    GroupClient,
    Membership,
    NoSuitableFormError,
    RemoteError,
    consume,
)
from wot_agents.bindings.websocket import WebSocketClient
from wot_agents.cli import main

from .conftest import make_agent

OWNER, MEMBER, OUTSIDER = (AgentIdentity.generate() for _ in range(3))


async def _authority(directory: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{directory}/groups") as response:
        return str((await response.json())["authority"])


async def test_only_the_owner_changes_a_group_and_only_members_get_credentials(directory: str) -> None:
    async with GroupClient(directory, OWNER) as owner, GroupClient(directory, OUTSIDER) as outsider:
        created = await owner.create("ops", [MEMBER.did])
        assert created["owner"] == OWNER.did and created["members"] == [MEMBER.did]
        with pytest.raises(AccessDenied, match="403 only the owner"):
            await outsider.update("ops", [OUTSIDER.did])
        with pytest.raises(AccessDenied, match=r"403 .* is not a member"):
            await outsider.credential("ops")
        with pytest.raises(AccessDenied, match="credentialTtl"):
            await owner.update("ops", [MEMBER.did], policy={"credentialTtl": 3600})
    async with GroupClient(directory, MEMBER) as member:
        credential, expires = await member.credential("ops")
        assert credential.count(".") == 2 and expires > 0
    async with aiohttp.ClientSession() as http:  # a proof made for another body is refused
        async with http.put(f"{directory}/groups/ops", json={"owner": OWNER.did}) as response:
            assert response.status == 401


@pytest.fixture
async def served(directory: str, mosquitto: str) -> AsyncIterator[dict[str, Any]]:
    """An agent whose 'add' only group 'ops' may invoke; 'station' stays open."""
    async with GroupClient(directory, OWNER) as owner:
        await owner.create("ops", [MEMBER.did], policy={"credentialTtl": 2})
    policy = AccessPolicy(
        rules={"add": {"group:ops"}}, authorities={await _authority(directory)}, directory=directory
    )
    async with make_agent().serve(http=True, ws=True, mqtt=mosquitto, access=policy) as running:
        yield running.description.to_dict()


@pytest.mark.parametrize("scheme", ["http", "ws", "mqtt"])
async def test_a_member_calls_a_group_only_action_on_every_binding(
    directory: str, served: dict[str, Any], scheme: str
) -> None:
    definition = served["securityDefinitions"]["membership_sc"]
    assert definition["scheme"] == "bearer" and definition["lmos:groups"] == ["ops"]
    assert served["actions"]["add"]["lmos:allow"] == ["group:ops"]
    async with (
        Membership(directory, MEMBER, "ops") as ops,
        consume(served, credentials=ops, prefer=[scheme]) as thing,
    ):
        assert await thing.invoke_action("add", {"a": 2, "b": 2}) == 4
        assert await thing.read_property("station") == "Berlin"


async def test_callers_without_membership_are_refused(
    directory: str, served: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with consume(served) as thing:
        with pytest.raises(NoSuitableFormError, match="membership_sc"):
            await thing.invoke_action("add", {"a": 1})
        assert await thing.read_property("station") == "Berlin"  # no rule: open as before
    href = next(f["href"] for f in served["actions"]["add"]["forms"] if f["href"].startswith("http"))
    with caplog.at_level(logging.WARNING, logger="wot_agents.trust"):
        async with aiohttp.ClientSession() as http, http.post(href, json={"a": 1}) as response:
            problem = await response.json()
    assert response.status == 403 and "only for group:ops" in problem["detail"]
    assert "refused action 'add'" in caplog.text


async def _refused_within(thing: Any, seconds: float) -> RemoteError:
    """Call until the agent refuses (the credential lapses), within ``seconds``."""
    async with asyncio.timeout(seconds):
        while True:
            try:
                await thing.invoke_action("add", {"a": 1})
            except RemoteError as exc:
                return exc
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("scheme", ["http", "mqtt"])
async def test_a_removed_member_is_refused_once_its_credential_lapses(
    directory: str, served: dict[str, Any], scheme: str
) -> None:
    async with Membership(directory, MEMBER, "ops") as ops:
        async with consume(served, credentials=ops, prefer=[scheme]) as thing:
            assert await thing.invoke_action("add", {"a": 1}) == 2
            async with GroupClient(directory, OWNER) as owner:
                await owner.update("ops", [])  # removed
            refused = await _refused_within(thing, 60)
    assert refused.status in (401, 403)
    assert "expired" in str(refused) or "only for group:ops" in str(refused)
    with pytest.raises(AccessDenied, match="not a member"):
        async with Membership(directory, MEMBER, "ops"):
            pass


async def test_a_replayed_expired_credential_is_refused(directory: str, served: dict[str, Any]) -> None:
    async with Membership(directory, MEMBER, "ops") as ops:
        captured = ops.headers(served["id"])
    href = next(f["href"] for f in served["actions"]["add"]["forms"] if f["href"].startswith("http"))
    async with aiohttp.ClientSession() as http:
        async with http.post(href, json={"a": 1}, headers=captured) as response:
            assert response.status == 200  # fresh: accepted
        async with asyncio.timeout(30):  # replayed until its expiry (2 s + 5 s of clock leeway)
            while True:
                async with http.post(href, json={"a": 1}, headers=captured) as response:
                    if response.status != 200:
                        problem = await response.json()
                        break
                await asyncio.sleep(0.2)
    assert response.status == 401 and "expired" in problem["detail"]


async def test_a_dissolved_group_gives_no_more_credentials(directory: str) -> None:
    async with GroupClient(directory, OWNER) as owner:
        await owner.create("temporary", [MEMBER.did])
        await owner.dissolve("temporary")
    with pytest.raises(AccessDenied, match="404 no group"):
        async with Membership(directory, MEMBER, "temporary"):
            pass


def test_the_group_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "wot_agents.cli", "directory", "--memory", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split(" on ")[1].split(" ")[0].rstrip("/")
        owner = ["--directory", url, "--identity", str(tmp_path / "owner.key")]
        member_key = tmp_path / "member.key"
        member = AgentIdentity.load_or_create(member_key).did
        assert main(["group", *owner, "create", "ops", member, "--ttl", "30"]) == 0
        assert json.loads(capsys.readouterr().out)["members"] == [member]
        as_member = ["--directory", url, "--identity", str(member_key)]
        assert main(["group", *as_member, "credential", "ops"]) == 0
        assert json.loads(capsys.readouterr().out)["credential"].count(".") == 2
        assert main(["group", *as_member, "dissolve", "ops"]) == 1
        assert "only the owner" in capsys.readouterr().err
        assert main(["group", *owner, "dissolve", "ops"]) == 0
        assert main(["group", *owner, "show", "ops"]) == 1
        assert "no group" in capsys.readouterr().err
    finally:
        process.terminate()
        process.communicate(timeout=10)


async def test_groups_of_a_directory_that_protects_reads() -> None:
    async with running_directory(token="s3cret", protect_reads=True) as directory:
        async with GroupClient(directory, OWNER) as anonymous:
            with pytest.raises(AccessDenied, match="401"):
                await anonymous.create("ops", [MEMBER.did])
        async with GroupClient(directory, OWNER, token="s3cret") as owner:
            await owner.create("ops", [MEMBER.did])
        async with Membership(directory, MEMBER, "ops", token="s3cret") as ops:
            assert ops.credential.count(".") == 2


async def test_a_removed_member_is_refused_at_once_through_the_directory_events(directory: str) -> None:
    async with GroupClient(directory, OWNER) as owner:
        await owner.create("ops", [MEMBER.did])  # credentials of the default 60 s
        policy = AccessPolicy(
            rules={"add": {"group:ops"}}, authorities={await _authority(directory)}, directory=directory
        )
        async with make_agent().serve(http=True, access=policy) as running:
            async with Membership(directory, MEMBER, "ops") as ops:
                assert ops.expires - time.time() > 30
                async with consume(running.description, credentials=ops) as thing:
                    assert await thing.invoke_action("add", {"a": 1}) == 2
                    await owner.update("ops", [])
                    refused = await _refused_within(thing, 10)  # well inside the credential's life
                    assert refused.status == 403 and "only for group:ops" in str(refused)
                    await owner.update("ops", [MEMBER.did])  # back in: its credential counts again
                    async with asyncio.timeout(10):
                        while True:
                            try:
                                assert await thing.invoke_action("add", {"a": 1}) == 2
                                break
                            except RemoteError:
                                await asyncio.sleep(0.05)


async def test_a_refreshed_credential_replaces_the_websocket_connection(
    directory: str, served: dict[str, Any]
) -> None:
    pool = ClientPool()
    async with Membership(directory, MEMBER, "ops") as ops, pool:  # credentials of 2 s: refreshed
        async with consume(served, credentials=ops, prefer=["ws"], clients=pool) as thing:
            assert await thing.invoke_action("add", {"a": 1}) == 2
            first = ops.credential
            async with asyncio.timeout(10):
                while ops.credential == first:  # noqa: ASYNC110 (the refresh task changes it)
                    await asyncio.sleep(0.05)
            assert await thing.invoke_action("add", {"a": 1}) == 2
            client = pool.client_for("ws")
            assert isinstance(client, WebSocketClient)
            assert len(client._connections) == 1  # the old handshake's connection is closed
