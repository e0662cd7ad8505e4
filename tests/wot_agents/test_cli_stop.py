"""Every long-running ``wot-agents`` command (a server or a watcher) stops the same way on Ctrl-C
(SIGINT) and on SIGTERM (what Docker, Kubernetes and systemd send): cleanly, no traceback, exit 0.

Each runs in a real child process, against a real directory and real mDNS on loopback.
(``wot-agents runtime`` loads an embedding model to start: tests/runtime/test_cli.py stops it.)
"""

from __future__ import annotations

import asyncio
import re
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from discovery import Announcer
from tests.servers import http_server, running_directory, serving

THING = {
    "@context": "https://www.w3.org/2022/wot/td/v1.1",
    "security": "nosec",
    "securityDefinitions": {"nosec": {"scheme": "nosec"}},
}

#: The command line (``{directory}``, ``{title}`` filled in) and the line it prints once running.
COMMANDS = {
    "directory": (["directory", "--memory", "--port", "0"], r"^directory listening on "),
    "serve": (["serve", "lonely:agent", "--http", "0"], r"TD at http://"),
    "discover --watch": (["discover", "--watch", "--interface", "127.0.0.1"], r"^added\s+{title}"),
    "discover --bridge": (
        ["discover", "--bridge", "{directory}", "--interface", "127.0.0.1"],
        r"^mirroring the agents announced on the LAN into ",
    ),
}


@pytest.fixture
async def lan_thing() -> AsyncIterator[str]:
    """A Thing announced by mDNS on loopback (what ``discover --watch`` finds): its title."""
    title = f"Stopper {secrets.token_hex(3)}"
    document = {**THING, "id": f"urn:test:stopper-{title[-6:]}", "title": title}
    async with (
        http_server({"/.well-known/wot": serving(document)}) as port,
        Announcer(document, port=port, interfaces=["127.0.0.1"]),
    ):
        yield title


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", COMMANDS)
async def test_a_long_running_command_stops_cleanly_with_exit_0(
    command: str, sig: signal.Signals, tmp_path: Path, lan_thing: str
) -> None:
    (tmp_path / "lonely.py").write_text("from wot_agents import Agent\nagent = Agent('Lonely')\n")
    argv, ready = COMMANDS[command]
    async with running_directory() as directory:
        words = [word.format(directory=directory, title=lan_thing) for word in argv]
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wot_agents.cli", *words,
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert process.stdout is not None and process.stderr is not None
            pattern = re.compile(ready.format(title=re.escape(lan_thing)))
            seen: list[str] = []
            async with asyncio.timeout(60):
                while not any(pattern.search(line) for line in seen):
                    line = (await process.stdout.readline()).decode()
                    assert line, f"{command} ended early: {await process.stderr.read()!r}"
                    seen.append(line)
            process.send_signal(sig)
            async with asyncio.timeout(60):
                _, err = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, f"{command}: exit {process.returncode} after {sig.name}\n{err.decode()}"
    assert b"Traceback" not in err, err.decode()
