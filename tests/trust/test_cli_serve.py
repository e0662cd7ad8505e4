"""``wot-agents serve --identity KEY --tls DIR:NAME``: a signed TD over mutual TLS from the command line."""

from __future__ import annotations

import asyncio
import signal
import ssl
import sys
from pathlib import Path

import aiohttp

from wot_agents import AgentIdentity, verify
from wot_agents.trust import LocalCA

AGENT_MODULE = """
from wot_agents import Agent

agent = Agent("Echo", id="urn:example:echo-signed")

@agent.action
async def echo(text: str) -> str:
    return text
"""


async def test_serve_signs_and_requires_certificates(tmp_path: Path) -> None:
    (tmp_path / "server.py").write_text(AGENT_MODULE)
    ca = LocalCA.create(tmp_path / "ca")
    ca.issue("echo")
    caller = ca.issue("caller", did=AgentIdentity.generate().did)
    key = tmp_path / "echo.key"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wot_agents.cli", "serve", "server:agent", "--http", "0",
        "--identity", str(key), "--tls", f"{tmp_path / 'ca'}:echo",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            while "TD at" not in (line := (await proc.stdout.readline()).decode()):
                assert line, f"serve exited early: {(await proc.communicate())[1].decode()}"
        td_url = line.split("TD at ")[1].strip()
        assert td_url.startswith("https://")
        async with aiohttp.ClientSession() as http:
            async with http.get(td_url, ssl=caller.client_context()) as response:
                td = await response.json()
            anonymous = plain_tls(caller.ca)  # no client certificate: the TD is public, no more
            async with http.get(td_url, ssl=anonymous) as response:
                assert response.status == 200
            href = td["actions"]["echo"]["forms"][0]["href"]
            async with http.post(href, json={"text": "hi"}, ssl=anonymous) as response:
                assert response.status == 401
            async with http.post(href, json={"text": "hi"}, ssl=caller.client_context()) as response:
                assert await response.json() == "hi"
        assert verify(td) == [AgentIdentity.load_or_create(key).did]
        assert td["securityDefinitions"]["mtls_sc"]["scheme"] == "lmos:mtls"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await proc.communicate()


def plain_tls(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))
