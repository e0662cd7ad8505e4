"""The README cannot drift from the code.

- A Python block marked ``<!-- file: PATH -->`` is that file, to the byte; the quickstart's two
  files are run end to end (server, then client, then Ctrl-C) as a newcomer would run them.
- Every other Python block is compiled (top-level ``await`` allowed, as in a notebook or
  ``python -m asyncio``), and every name it imports must exist in the module it imports from.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import os
import re
import signal
import socket
import sys

import aiohttp
import pytest

from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"(?:<!-- file: (?P<file>\S+) -->\n)?```python\n(?P<code>.*?)```", re.S)
BLOCKS = [(m["file"], m["code"], README[: m.start()].count("\n") + 1) for m in BLOCK.finditer(README)]
QUICKSTART = REPO / "examples" / "quickstart"


def test_the_readme_has_python_blocks_and_the_quickstart_files() -> None:
    files = {file for file, _, _ in BLOCKS if file}
    assert {"examples/quickstart/server.py", "examples/quickstart/client.py"} <= files
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize(("file", "code"), [(f, c) for f, c, _ in BLOCKS if f], ids=lambda v: str(v)[:40])
def test_a_file_block_is_the_file(file: str, code: str) -> None:
    assert (REPO / file).read_text(encoding="utf-8") == code


@pytest.mark.parametrize(("code", "line"), [(c, n) for f, c, n in BLOCKS if not f], ids=lambda v: str(v)[:30])
def test_a_block_compiles_and_imports_what_exists(code: str, line: int) -> None:
    tree = compile(
        code, f"README.md:{line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT | ast.PyCF_ONLY_AST
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name) or _is_module(f"{node.module}.{alias.name}"), (
                    f"README.md:{line}: {node.module} has no {alias.name}"
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)


def _is_module(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_quickstart_runs_as_written() -> None:
    port = _free_port()
    env = {**os.environ, "PORT": str(port)}
    server = await asyncio.create_subprocess_exec(
        sys.executable, "server.py", cwd=QUICKSTART, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/weather"
    try:
        async with asyncio.timeout(60), aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(url) as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    assert server.returncode is None, "server.py exited early"
                await asyncio.sleep(0.1)
        client = await asyncio.create_subprocess_exec(
            sys.executable, "client.py", url, cwd=QUICKSTART,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(60):
            out, err = await client.communicate()
        assert client.returncode == 0, err.decode()
        assert out.decode().splitlines() == ["Sunny in Berlin for 2 day(s).", "Sunny tomorrow."]
        server.send_signal(signal.SIGINT)  # Ctrl-C
        async with asyncio.timeout(30):
            out, err = await server.communicate()
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
    # A clean Ctrl-C: exit 0 and no KeyboardInterrupt traceback (asyncio.run(agent.serve(...))).
    assert server.returncode == 0, err.decode()
    assert b"Traceback" not in err and f"Weather's TD: {url}" in out.decode()
