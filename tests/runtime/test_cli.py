"""``wot-agents runtime``: the command serves the LMOS API until SIGINT and stops cleanly."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.agents import body, chat_agent


async def test_the_command_serves_agent_files_and_stops_on_sigint(tmp_path: Path) -> None:
    async with chat_agent("weather").serve(http=True) as running:
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
            url = match.group(1)
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"{url}/lmos/runtime/apis/v1/acme/chat/c1/message",
                    json=body("rain?", explicit="WeatherAgent"),
                    headers={"x-turn-id": "t1"},
                ) as reply:
                    assert reply.status == 200
                    assert (await reply.json())["content"] == "WeatherAgent: rain?"
            process.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(process.wait(), 20) == 0
            assert b"Traceback" not in await process.stderr.read()
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


@pytest.mark.parametrize(
    ("arguments", "says"),
    [(["--port", "-5"], b"port"), (["--agents", "/nonexistent/agents.json"], b"/nonexistent/agents.json")],
)
async def test_bad_settings_exit_with_status_2(arguments: list[str], says: bytes) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wot_agents.cli", "runtime", "--router", "explicit", "--memory", *arguments,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2, stderr
    assert b"wot-agents runtime:" in stderr and says in stderr and b"Traceback" not in stderr


async def test_the_readme_curl_reaches_the_right_agent_through_the_command(
    deployment: Any, mosquitto: str, tmp_path: Path
) -> None:
    from .test_chat import README_BODY

    await deployment.add(chat_agent("weather"), http=True)
    await deployment.add(chat_agent("billing"), ws=True)
    await deployment.add(chat_agent("travel"), mqtt=mosquitto)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wot_agents.cli", "runtime", "--directory", deployment.directory,
        "--port", "0", "--store", str(tmp_path / "runtime.db"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stderr is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        match = re.search(r"listening on (http://\S+?)/apis/v1/", line)
        assert match, line
        url = match.group(1)
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(120):  # ready once the agents are listed and the router learnt them
                while True:
                    async with http.get(f"{url}/health/readiness") as ready:
                        if ready.status == 200:
                            break
                    await asyncio.sleep(0.2)
            for n, (query, agent) in enumerate(
                (
                    ("will it rain in Berlin tomorrow?", "WeatherAgent"),
                    ("where can I find my last invoice?", "BillingAgent"),
                    ("book me a flight to Madrid", "TravelAgent"),
                )
            ):
                async with http.post(
                    f"{url}/lmos/runtime/apis/v1/acme/chat/conv-{n}/message",
                    data=README_BODY.replace("<user query>", query),
                    headers={"Content-Type": "application/json", "x-turn-id": "turn-1"},
                ) as reply:
                    answer = await reply.json()
                assert (reply.status, answer["agent"]["name"]) == (200, agent), answer
                assert answer["content"] == f"{agent}: {query}"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
