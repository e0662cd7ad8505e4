"""``wot-agents serve module:agent`` and ``await agent.serve()`` as a process's main loop.

The agent runs in a real child process, registered in a real directory; SIGTERM (what Docker and
Kubernetes send) must stop it like Ctrl-C: deregistered at once, exit code 0, no traceback.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.servers import running_directory
from wot_agents import Agent, PayloadError, is_chat_agent
from wot_agents.cli import main

AGENT_MODULE = """
from wot_agents import Agent, Capability, ChatRequest, ChatStream, chat_handler

agent = Agent(
    "Echo",
    id="urn:example:echo-served",
    description="Repeats what it is told.",
    capabilities=[Capability(id="urn:echo:echo", name="Echo", examples=["say it back"])],
)

@chat_handler(agent)
async def reply(request: ChatRequest, stream: ChatStream) -> str:
    return request.messages[-1].content

def make_agent() -> Agent:
    return agent
"""

MAIN_LOOP_SCRIPT = """
import asyncio, sys
from server import agent

async def main() -> None:
    await agent.serve(http=0, directory=sys.argv[1], registration_ttl=600)

asyncio.run(main())
print("returned", flush=True)
"""


@pytest.fixture
async def directory() -> AsyncIterator[str]:
    async with running_directory() as url:
        yield url


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "server.py").write_text(textwrap.dedent(AGENT_MODULE))
    (tmp_path / "main_loop.py").write_text(textwrap.dedent(MAIN_LOOP_SCRIPT))
    return tmp_path


async def _registered(directory: str, thing_id: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{directory}/things/{thing_id}") as response:
        return response.status


async def _wait_registered(directory: str, thing_id: str, *, within: float = 60.0) -> None:
    async with asyncio.timeout(within):
        while await _registered(directory, thing_id) != 200:  # noqa: ASYNC110 (polling over HTTP)
            await asyncio.sleep(0.05)


async def _stop(proc: asyncio.subprocess.Process, sig: signal.Signals) -> tuple[int, str, str]:
    proc.send_signal(sig)
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_serve_command_registers_and_deregisters_on_signal(
    project: Path, directory: str, sig: signal.Signals
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wot_agents.cli", "serve", "server:agent", "--http", "0",
        "--ws", "--directory", directory, "--ttl", "600",
        cwd=project, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(60):
            while not any("TD at" in line for line in lines):
                line = (await proc.stdout.readline()).decode()
                assert line, f"serve exited early: {(await proc.communicate())[1].decode()}"
                lines.append(line)
        td_url = next(line.split("TD at ")[1].strip() for line in lines if "TD at" in line)
        assert any(line.startswith("Echo: ws ws://") for line in lines), lines
        async with aiohttp.ClientSession() as http, http.get(td_url) as response:
            td = await response.json()
        assert td["id"] == "urn:example:echo-served" and is_chat_agent(td)
        await _wait_registered(directory, "urn:example:echo-served")
        code, out, err = await _stop(proc, sig)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0, err
    assert "Traceback" not in err and "Echo: stopping" in out
    # Deregistered on the way out, not left to its 600 s ttl.
    assert await _registered(directory, "urn:example:echo-served") == 404


async def test_awaited_serve_stops_cleanly_on_sigterm(project: Path, directory: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "main_loop.py", directory,
        cwd=project, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await _wait_registered(directory, "urn:example:echo-served")
        code, out, err = await _stop(proc, signal.SIGTERM)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # Without the handler, SIGTERM kills the process at once: exit -15, nothing printed after.
    assert code == 0, err
    assert "returned" in out and "Traceback" not in err
    assert await _registered(directory, "urn:example:echo-served") == 404


def test_serve_command_explains_a_wrong_target(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "path", ["", *sys.path])
    assert main(["serve", "nosuchmodule:agent"]) == 2
    assert "no module named 'nosuchmodule'" in capsys.readouterr().err
    assert main(["serve", "server:agnet"]) == 2
    assert "has no attribute 'agnet'; agents there: agent" in capsys.readouterr().err
    assert main(["serve", "server"]) == 2
    assert "expected MODULE:ATTRIBUTE" in capsys.readouterr().err
    assert main(["serve", "server:reply"]) == 2  # a function that is not an agent factory
    assert "not a wot_agents.Agent" in capsys.readouterr().err
    sys.modules.pop("server", None)


def test_serving_used_without_async_with_says_how() -> None:
    agent = Agent("Lonely")
    serving = agent.serve(http=True)
    with pytest.raises(AttributeError, match=r"async with agent\.serve\(\.\.\.\) as running"):
        serving.base_urls  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        serving.nonsense  # type: ignore[attr-defined]  # noqa: B018


def test_is_chat_agent_takes_a_document_or_a_model(weather_agent: dict[str, object]) -> None:
    from wot_agents import AgentDescription

    chat = {**weather_agent, "actions": {"chat": {"forms": [{"href": "http://x/chat"}]}}}
    assert is_chat_agent(chat) and is_chat_agent(AgentDescription.from_dict(chat))
    assert not is_chat_agent({**weather_agent, "actions": {}})
    assert not is_chat_agent(AgentDescription.from_dict({**weather_agent, "actions": {}}))


async def test_payload_error_message_lists_its_problems() -> None:
    agent = Agent("Counter")

    @agent.action()
    async def add(days: int, city: str) -> int:
        return days

    with pytest.raises(PayloadError) as caught:
        await agent.actions["add"].invoke({"days": "x"})
    message = str(caught.value)
    assert message.startswith("invalid input")
    assert "/days" in message and "city" in message  # both problems, not only the count
