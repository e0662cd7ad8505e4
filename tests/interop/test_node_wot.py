"""Interoperability with Eclipse Thingweb node-wot (pinned in package.json), both ways, over HTTP and MQTT."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.agents import make_agent
from tests.servers import running_directory
from wot_agents import AgentDescription, DirectoryClient, consume
from wot_agents.bindings import serve
from wot_agents.bindings.mqtt import MqttServer

HERE = Path(__file__).parent
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None or not (HERE / "node_modules" / "@node-wot" / "core").is_dir(),
    reason="node-wot is not installed: run scripts/bootstrap.sh",
)


async def _node(*args: str) -> str:
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE, *args, cwd=HERE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(60):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_node_wot_consumes_a_wot_agents_agent(mosquitto: str) -> None:
    agent = make_agent()
    # node-wot 0.8 reads MQTT topics from the href path only: serve them there too.
    server = MqttServer(mosquitto, topic_in_href=True)
    async with serve(agent, http=True, ws=True, mqtt=server) as running:  # no option: TD 1.0 context first
        assert running.td_url is not None
        output = await _node("consume.js", running.td_url)
        result = json.loads(output.strip().splitlines()[-1])
        assert result["title"] == "Test Weather"
        assert result["http"] == {"temperature": 20.0, "add": 42}
        assert result["mqtt"]["temperature"] == 20.0
        for _ in range(200):  # node-wot wrote over MQTT (fire-and-forget): the agent applies it soon
            if await agent.properties["temperature"].read() == 31.5:
                break
            await asyncio.sleep(0.01)
        assert await agent.properties["temperature"].read() == 31.5


@pytest.fixture
async def node_thing(mosquitto: str) -> AsyncIterator[str]:
    """A node-wot thing exposed over HTTP and MQTT; yields the URL of its TD."""
    assert NODE is not None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        NODE,
        "thing.js",
        str(port),
        mosquitto,
        cwd=HERE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(60):
            while (line := await process.stdout.readline()) and line.strip() != b"READY":
                pass
        assert line.strip() == b"READY", "node-wot thing did not start"
        yield f"http://127.0.0.1:{port}/counter"
    finally:
        process.terminate()
        await process.wait()


async def test_wot_agents_consumes_a_node_wot_thing(node_thing: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(node_thing) as response:
        td = AgentDescription.from_dict(await response.json())
    assert not td.is_agent
    hosts = {
        urlsplit(form.href).hostname for _, _, affordance in td.affordances() for form in affordance.forms
    }
    assert hosts == {"127.0.0.1"}  # test traffic stays on loopback
    schemes = {form.href.split(":")[0] for form in td.actions["increment"].forms}  # type: ignore[index]
    assert {"http", "mqtt"} <= schemes
    async with consume(td, prefer=["http"]) as thing:
        assert await thing.read_property("count") == 0
        assert await thing.invoke_action("increment", 5) == 5
        assert await thing.read_property("count") == 5
    async with consume(td, prefer=["mqtt"]) as thing:
        await thing.invoke_action("reset")  # over MQTT: node-wot answers nothing, we do not wait
    async with consume(td, prefer=["http"]) as thing:
        for _ in range(200):
            if await thing.read_property("count") == 0:
                break
            await asyncio.sleep(0.01)
        assert await thing.read_property("count") == 0


async def test_a_node_wot_td_registers_in_our_directory(node_thing: str) -> None:
    # [tdd-validation-jsonschema]: a TD another implementation produced (TD 1.0-compatible
    # context) passes the directory's validation, keeps its contexts in front, and is found.
    async with aiohttp.ClientSession() as session, session.get(node_thing) as response:
        td = await response.json()
    async with running_directory() as url, DirectoryClient(url) as client:
        thing_id = await client.register(td)  # PUT /things/{id}: node-wot gives its TDs an id
        assert thing_id == td["id"]
        stored = await client.get(thing_id)
        assert stored["title"] == td["title"] == "counter"
        assert {k: v for k, v in stored.items() if k not in ("@context", "registration")} == {
            k: v for k, v in td.items() if k != "@context"
        }
        assert stored["@context"][:2] == td["@context"][:2]  # TD 1.0 first, TD 1.1 second
        assert await client.jsonpath("$[?@.title=='counter'].id") == [thing_id]
        rows = await client.sparql(
            'SELECT ?t WHERE { ?t <https://www.w3.org/2019/wot/td#title> ?x FILTER(str(?x) = "counter") }'
        )
        assert [b["t"]["value"] for b in rows["results"]["bindings"]] == [thing_id]
