"""Operating the runtime: metrics, health, the OpenAPI document, stream limits, graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.agents import Deployment, body, chat_agent, post


async def test_metrics_health_and_openapi(deployment: Deployment, http: aiohttp.ClientSession) -> None:
    def broken(request: Any, stream: Any) -> str:
        raise RuntimeError("down")

    await deployment.add(chat_agent("weather"), http=True)
    await deployment.add(chat_agent("billing", answer=broken), http=True)
    url = await deployment.start()
    async with http.get(f"{url}/health/liveness") as live, http.get(f"{url}/health/readiness") as ready:
        assert (live.status, ready.status) == (200, 200)
        assert (await ready.json()) == {"status": "UP"}
    await post(http, url, body("will it rain tomorrow?"), conversation="m1")
    await post(http, url, body("my invoice", explicit="BillingAgent"), conversation="m2")
    await post(http, url, body("what is the boiling point of tungsten"), conversation="m3")
    async with http.get(f"{url}/metrics") as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await answer.text()
    lines = set(text.splitlines())
    assert 'runtime_turns_total{outcome="ok",tenant="acme"} 1' in lines
    assert 'runtime_turns_total{outcome="AGENT_CLIENT_EXCEPTION",tenant="acme"} 1' in lines
    assert 'runtime_turns_total{outcome="AGENT_NOT_FOUND",tenant="acme"} 1' in lines
    assert 'runtime_routing_decisions_total{agent="urn:test:agent:weather",method="vector"} 1' in lines
    assert "runtime_abstentions_total 1" in lines
    assert 'runtime_agent_errors_total{agent="urn:test:agent:billing",status="502"} 1' in lines
    assert 'runtime_turn_seconds_count{transport="json"} 3' in lines
    assert "runtime_catalog_agents 2" in lines and "runtime_open_streams 0" in lines
    # two vector-routed turns, one after the other: a batch each
    assert {"runtime_routing_batches 2", "runtime_routing_batched_turns 2"} <= lines
    async with http.get(f"{url}/openapi.json") as answer:
        document = await answer.json()
    assert document["openapi"].startswith("3.1")
    chat = document["paths"]["/apis/v1/{tenantId}/chat/{conversationId}/message"]["post"]
    assert {p["name"] for p in chat["parameters"]} >= {"tenantId", "conversationId", "x-turn-id", "x-subset"}
    schemas = document["components"]["schemas"]
    assert set(schemas["Conversation"]["required"]) == {"inputContext", "systemContext", "userContext"}
    assert "channelId" in schemas["SystemContext"]["properties"]
    refs = re.findall(r'"\$ref": "#/components/schemas/(\w+)"', json.dumps(document))
    assert refs and all(ref in schemas for ref in refs)  # every reference resolves


async def test_streams_are_limited(deployment: Deployment, http: aiohttp.ClientSession) -> None:
    await deployment.add(chat_agent("weather"), http=True)
    url = await deployment.start(router="explicit", max_streams=1)
    async with http.ws_connect(f"{url}/apis/v1/acme/chat/c1/ws"):
        headers = {"Accept": "text/event-stream", "x-turn-id": "t"}
        payload = body("rain", explicit="WeatherAgent")
        async with http.post(f"{url}/apis/v1/acme/chat/c2/message", json=payload, headers=headers) as reply:
            assert reply.status == 503
            assert (await reply.json())["errorCode"] == "SERVICE_UNAVAILABLE"
        status, _ = await post(http, url, payload)  # plain JSON turns are not streams
        assert status == 200
    async with http.post(f"{url}/apis/v1/acme/chat/c2/message", json=payload, headers=headers) as reply:
        assert reply.status == 200 and reply.content_type == "text/event-stream"
        await reply.read()


async def test_shutdown_finishes_the_turns_in_flight(tmp_path: Path) -> None:
    asked = asyncio.Event()

    async def slow(request: Any, stream: Any) -> str:
        asked.set()
        await asyncio.sleep(1.0)
        return "finished"

    async with chat_agent("weather", answer=slow).serve(http=True) as running:
        agents = tmp_path / "agents.json"
        agents.write_text(json.dumps([running.description.to_dict()]))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wot_agents.cli", "runtime", "--agents", str(agents),
            "--router", "explicit", "--port", "0", "--memory",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert process.stdout is not None and process.stderr is not None
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            match = re.search(r"listening on (http://\S+?)/apis/v1/", line)
            assert match, line
            async with aiohttp.ClientSession() as http:
                turn = asyncio.ensure_future(
                    post(http, match.group(1), body("rain", explicit="WeatherAgent"))
                )
                async with asyncio.timeout(20):
                    await asked.wait()
                process.send_signal(signal.SIGTERM)
                status, reply = await turn
            assert (status, reply["content"]) == (200, "finished")
            assert await asyncio.wait_for(process.wait(), 20) == 0
            assert b"Traceback" not in await process.stderr.read()
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
