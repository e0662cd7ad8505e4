"""Candidates from mDNS when no directory is configured: real multicast, confined to the loopback."""

from __future__ import annotations

import asyncio
import secrets
from urllib.parse import urlsplit

import aiohttp

from discovery import Announcer
from runtime import Runtime, RuntimeSettings, create_app, mdns_source
from tests.agents import body, chat_agent, post
from wot_agents import serve_app

LOOPBACK = ["127.0.0.1"]


async def test_agents_announced_on_the_lan_are_candidates_until_they_leave(
    http: aiohttp.ClientSession,
) -> None:
    token = secrets.token_hex(4)  # another run may share the loopback: only our agent is asked for
    agent_id = f"urn:test:mdns:{token}"
    async with chat_agent("weather", agent_id=agent_id).serve(http=True) as running:
        td_url = urlsplit(running.td_url or "")
        runtime = Runtime(
            RuntimeSettings(router="explicit"), source=mdns_source(interfaces=LOOPBACK, recheck_interval=None)
        )
        async with serve_app(create_app(runtime=runtime)) as url:
            announcer = Announcer(
                running.description, port=td_url.port or 80, td_path=td_url.path, interfaces=LOOPBACK
            )
            async with announcer:
                async with asyncio.timeout(20):
                    await runtime.catalog.wait_for(lambda catalog: catalog.get(agent_id) is not None)
                status, reply = await post(http, url, body("rain?", explicit=agent_id))
                assert (status, reply["content"]) == (200, "WeatherAgent: rain?"), reply
            async with asyncio.timeout(20):  # its goodbye packets
                await runtime.catalog.wait_for(lambda catalog: catalog.get(agent_id) is None)
            status, reply = await post(http, url, body("rain?", explicit=agent_id))
            assert (status, reply["errorCode"]) == (404, "AGENT_NOT_FOUND")
