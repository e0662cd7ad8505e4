"""The directory verifies signed TDs on every write, and keeps them verifiable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.servers import running_directory
from wot_agents import AgentIdentity, sign, verify
from wot_agents.trust import LocalCA

from .conftest import make_agent

MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
def identity() -> AgentIdentity:
    return AgentIdentity.generate()


async def test_signed_td_verifies_after_enrichment_listing_and_renewal(
    directory: str,
    http: aiohttp.ClientSession,
    make_td: Callable[..., dict[str, Any]],
    identity: AgentIdentity,
) -> None:
    td = sign(make_td(titles={"en": "Weather", "de": "Wetter"}), identity)
    url = f"{directory}/things/{td['id']}"
    async with http.put(url, json={**td, "registration": {"ttl": 60}}) as response:
        assert response.status == 201, await response.text()
    async with http.get(url, headers={"Accept-Language": "de"}) as response:
        stored = await response.json()
    assert "registration" in stored and stored["@context"] != td["@context"]  # enriched
    assert stored["title"] == td["title"]  # not switched to German: that would break the signature
    assert verify(stored) == [identity.did]
    async with http.patch(url, json={}, headers=MERGE) as response:  # a renewal
        assert response.status == 204
    async with http.get(f"{directory}/things") as response:
        (listed,) = await response.json()
    assert verify(listed) == [identity.did]


async def test_tampered_or_forged_tds_are_refused(
    directory: str,
    http: aiohttp.ClientSession,
    make_td: Callable[..., dict[str, Any]],
    identity: AgentIdentity,
    caplog: pytest.LogCaptureFixture,
) -> None:
    td = sign(make_td(), identity)
    tampered = {**td, "title": "Weather, and your passwords"}
    with caplog.at_level(logging.WARNING, logger="wot_agents.trust"):
        async with http.put(f"{directory}/things/{td['id']}", json=tampered) as response:
            problem = await response.json()
    assert response.status == 400 and response.content_type == "application/problem+json"
    assert "does not verify" in problem["detail"] and problem["issuer"] == identity.did
    assert "directory: refused" in caplog.text
    async with http.post(f"{directory}/things", json={k: v for k, v in td.items() if k != "id"}) as response:
        assert response.status == 400
        assert "own id" in (await response.json())["detail"]
    async with http.get(f"{directory}/things") as response:
        assert await response.json() == []  # nothing stored


async def test_patches_on_signed_tds(
    directory: str,
    http: aiohttp.ClientSession,
    make_td: Callable[..., dict[str, Any]],
    identity: AgentIdentity,
) -> None:
    td = sign(make_td(), identity)
    url = f"{directory}/things/{td['id']}"
    async with http.put(url, json=td) as response:
        assert response.status == 201
    async with http.patch(url, json={"title": "Someone else's weather"}, headers=MERGE) as response:
        assert response.status == 400
        assert "does not verify" in (await response.json())["detail"]
    resigned = sign({**td, "title": "Weather 2"}, identity)
    patch = {"title": "Weather 2", "signatures": resigned["signatures"]}
    async with http.patch(url, json=patch, headers=MERGE) as response:
        assert response.status == 204, await response.text()
    async with http.patch(url, json={"signatures": None, "title": "Unsigned"}, headers=MERGE) as response:
        assert response.status == 204  # signatures not required: stored unsigned
    async with http.get(url) as response:
        assert "signatures" not in await response.json()


async def test_required_signatures_and_listed_issuers(
    http: aiohttp.ClientSession, make_td: Callable[..., dict[str, Any]], identity: AgentIdentity
) -> None:
    async with running_directory(require_signatures=True, trusted_issuers=[identity.did]) as directory:
        td = make_td()
        url = f"{directory}/things/{td['id']}"
        async with http.put(url, json=td) as response:
            assert response.status == 400
            assert "not signed" in (await response.json())["detail"]
        stranger = AgentIdentity.generate()
        async with http.put(url, json=sign(td, stranger)) as response:
            problem = await response.json()
            assert response.status == 400 and "none of them a trusted issuer" in problem["detail"]
        async with http.put(url, json=sign(td, identity)) as response:
            assert response.status == 201
        async with http.patch(url, json={"signatures": None}, headers=MERGE) as response:
            assert response.status == 400  # would leave it unsigned


async def test_a_signed_agent_registers_with_a_directory_that_requires_it(identity: AgentIdentity) -> None:
    async with running_directory(require_signatures=True, trusted_issuers=[identity.did]) as directory:
        agent = make_agent()
        async with (
            agent.serve(http=True, identity=identity, directory=directory),
            aiohttp.ClientSession() as http,
        ):
            url = f"{directory}/things/{agent.id}"
            async with asyncio.timeout(10):
                while True:
                    async with http.get(url) as response:
                        if response.status == 200:
                            assert verify(await response.json()) == [identity.did]
                            break
                    await asyncio.sleep(0.05)


async def test_a_did_web_signer_over_https_with_a_lab_ca(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    ca = LocalCA.create(tmp_path / "ca")
    agent = make_agent()
    async with agent.serve(
        http=True, tls=ca.issue("agent"), identity=AgentIdentity.generate(), did_web=True
    ) as running:
        assert running.identity is not None and running.identity.did.startswith("did:web:")
        settings = {"require_signatures": True, "trusted_issuers": [running.identity.did]}
        async with running_directory(**settings, did_web_ca=tmp_path / "ca" / "ca.crt") as directory:
            td = running.description.to_dict()
            async with http.put(f"{directory}/things/{td['id']}", json=td) as response:
                assert response.status == 201, await response.text()
        async with running_directory(**settings) as directory:  # the system's CAs only: refused
            async with http.put(f"{directory}/things/{td['id']}", json=td) as response:
                problem = await response.json()
            assert response.status == 400 and "signing key could not be found" in problem["detail"]
