"""``wot-agents runtime``: the command serves the LMOS API until SIGINT and stops cleanly."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from .conftest import body, chat_agent


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
