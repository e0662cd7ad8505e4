"""The README cannot drift from the code: every code block in it is run by a test.

- A Python block is a file under ``examples/`` (``<!-- file: PATH -->`` just above it; the file
  is the block, to the byte) and a test below runs that file as a newcomer would: ``python
  examples/x.py`` from the repository's root, against the servers it needs (started by the test
  where the block expects them to be running already, e.g. the directory on :8081).
- A shell block runs line by line, as in one terminal, in a fresh folder that has the repository's
  ``examples/``; servers a line starts (``&``, or commands that run until Ctrl-C) are stopped with
  Ctrl-C at the end and must exit cleanly. Only a few lines do not run here, each for a reason
  given in ``NOT_RUN_HERE`` together with what does check it.
- A SPARQL block is run against a real directory by tests/registry/test_readme_sparql.py; an
  output sample (``text``) is checked by the test named in ``OUTPUTS``.

A block of any other kind, a Python block that is no file, a file no test runs, or a shell line no
handler knows fails :func:`test_every_readme_block_is_run_by_a_test`: whoever adds a block adds its
run. The README's fixed ports (the directory on 8081, an agent or the runtime on 8080) are replaced
by free ones, and nothing else.

The names the README uses are checked too: ``wot-agents`` flags against the CLI's parser, files
and folders, environment variables against the settings, the packages of "What is inside", and the
extras of the ``pip install`` line against pyproject.toml.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import os
import pkgutil
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest

from tests.conftest import REPO
from tests.servers import eventually, free_port, running_directory

README = (REPO / "README.md").read_text(encoding="utf-8")
EXAMPLES = REPO / "examples"
QUICKSTART = EXAMPLES / "quickstart"
BIN = Path(sys.executable).parent
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
    "HF_HUB_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
}

FENCE = re.compile(
    r"^(?:<!-- file: (?P<file>\S+) -->\n)?```(?P<lang>[^\n`]*)\n(?P<code>.*?)^```$", re.S | re.M
)


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int
    file: str | None

    def __str__(self) -> str:
        return f"README.md:{self.line}"


BLOCKS = [
    Block(m["lang"].strip(), m["code"], README[: m.start()].count("\n") + 1, m["file"])
    for m in FENCE.finditer(README)
]


def blocks(lang: str) -> list[Block]:
    return [block for block in BLOCKS if block.lang == lang]


# --- what runs each block ----------------------------------------------------------------------

#: Each example file a Python block is, and the test that runs it.
PYTHON_RUNS = {
    "examples/quickstart/server.py": "test_the_quickstart_runs_as_written",
    "examples/quickstart/client.py": "test_the_quickstart_runs_as_written",
    "examples/tour.py": "test_agents_are_announced_registered_and_found",
    "examples/agent_description.py": "test_agent_description",
    "examples/weather.py": "test_weather_declares_an_agent",
    "examples/bindings.py": "test_bindings",
    "examples/client_pool.py": "test_client_pool",
    "examples/chat.py": "test_chat",
    "examples/directory_client.py": "test_directory_client",
    "examples/announce.py": "test_agents_are_announced_registered_and_found",
    "examples/browse.py": "test_agents_are_announced_registered_and_found",
    "examples/routing.py": "test_routing",
    "examples/cascade.py": "test_cascade",
    "examples/trust.py": "test_trust",
}

#: Output samples (```text), by their first line, and the test that checks what they show.
OUTPUTS = {
    "  Will it rain in Berlin tomorrow?  [conversation demo-1]": (
        "tests/test_demo.py::test_demo_asks_each_sample_through_the_runtime_and_its_agent_answers_over_its_binding"
        " checks each of these answers, agent, binding and subset"
    ),
}

#: Shell lines that do not run in this test, why, and what checks them instead.
NOT_RUN_HERE = {
    "make demo": "runs examples/demo.py after scripts/bootstrap.sh: tests/test_demo.py runs that program",
    "make test": "is how CI runs this whole suite (this test included) on a fresh clone",
    "pip install": "would install into this environment: the extras it names are checked against "
    "pyproject.toml (test_the_pip_line_names_real_extras)",
    "kubectl apply": "needs a cluster that runs pods: tests/kubernetes/test_deploy.py renders both "
    "overlays with kubectl and checks them, and applies the CRDs to a real API server",
}


def test_every_readme_block_is_run_by_a_test() -> None:
    problems = []
    for block in BLOCKS:
        if block.lang == "python":
            if block.file is None:
                problems.append(
                    f"{block}: a Python block that is no example file: put <!-- file: examples/NAME.py --> "
                    "above it, write it as a program that runs, and run it in tests/test_readme.py"
                )
            elif block.file not in PYTHON_RUNS:
                problems.append(f"{block}: no test runs {block.file}: add one and list it in PYTHON_RUNS")
        elif block.lang == "sh":
            for command in commands(block.code):
                if handler_for(command) is None and not_run_reason(command) is None:
                    problems.append(f"{block}: no handler runs {command!r}: add one to HANDLERS")
        elif block.lang == "sparql":
            pass  # tests/registry/test_readme_sparql.py runs each, checked below
        elif block.lang == "text":
            if block.code.splitlines()[0] not in OUTPUTS:
                problems.append(f"{block}: an output sample no test checks: say which in OUTPUTS")
        else:
            problems.append(f"{block}: a ```{block.lang} block: no test runs this kind of block")
    assert not problems, "\n".join(problems)
    for file, test in PYTHON_RUNS.items():
        assert (REPO / file).is_file(), file
        assert callable(globals().get(test)), f"{file}: {test} does not exist"
    for why in [*OUTPUTS.values(), *NOT_RUN_HERE.values()]:  # the tests they name exist
        for path, name in re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", why):
            assert (REPO / path).is_file(), why
            assert not name or f"def {name}(" in (REPO / path).read_text(encoding="utf-8"), why


def test_the_readme_has_each_kind_of_block() -> None:
    files = {block.file for block in blocks("python")}
    assert {"examples/quickstart/server.py", "examples/quickstart/client.py"} <= files
    assert len(blocks("python")) >= 10 and len(blocks("sh")) >= 3


def test_the_sparql_blocks_are_the_ones_the_sparql_test_runs() -> None:
    from tests.registry.test_readme_sparql import readme_queries

    assert [query for query, _ in readme_queries()] == [block.code for block in blocks("sparql")]


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.file], ids=str)
def test_a_file_block_is_the_file(block: Block) -> None:
    assert block.file is not None
    assert (REPO / block.file).read_text(encoding="utf-8") == block.code


# --- running example files ---------------------------------------------------------------------


@dataclass
class Process:
    """A child process whose output lines are collected as they come."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, *argv: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> Process:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env or ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        started = cls(process)
        assert process.stdout is not None and process.stderr is not None
        started.readers = [
            asyncio.create_task(started._read(process.stdout, started.lines)),
            asyncio.create_task(started._read(process.stderr, started.errors)),
        ]
        return started

    @staticmethod
    async def _read(stream: asyncio.StreamReader, into: list[str]) -> None:
        async for line in stream:
            into.append(line.decode(errors="replace").rstrip("\n"))

    @property
    def out(self) -> str:
        return "\n".join(self.lines)

    @property
    def err(self) -> str:
        return "\n".join(self.errors)

    async def printed(self, pattern: str, within: float = 120, stream: str = "out") -> re.Match[str]:
        """The first line of output (or ``stream="err"``) matching ``pattern``, once printed (fails
        if the process exits first)."""
        found: list[re.Match[str]] = []
        lines = self.lines if stream == "out" else self.errors

        def check() -> bool:
            found.extend(m for m in map(re.compile(pattern).search, lines) if m)
            if not found:
                assert self.process.returncode is None, f"exited {self.process.returncode}:\n{self.err}"
            return bool(found)

        try:
            await eventually(check, within=within, every=0.1)
        except TimeoutError:
            raise AssertionError(f"never printed {pattern!r}; printed:\n{self.out}\n{self.err}") from None
        return found[0]

    async def wait(self, within: float = 300) -> int:
        async with asyncio.timeout(within):
            code = await self.process.wait()
            await asyncio.gather(*self.readers)
        return code

    async def stop(self, sig: int = signal.SIGINT) -> None:
        """Ctrl-C (or ``sig``): it must stop cleanly, with no traceback, exit 0 (the README's
        convention for servers and watchers stopped by the user, either signal)."""
        if self.process.returncode is None:
            self.process.send_signal(sig)
        code = await self.wait(60)
        assert code == 0, f"exit {code} after {signal.Signals(sig).name}:\n{self.err}"
        assert "Traceback" not in self.err, self.err

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)


@asynccontextmanager
async def example(file: str, *args: str, ports: dict[str, str] | None = None) -> AsyncIterator[Process]:
    """``python examples/FILE ARGS`` from the repository's root, running (killed on exit).

    ``ports`` replaces the README's fixed addresses (e.g. ``127.0.0.1:8081``) in a copy of the file.
    """
    path = REPO / file
    copy: Path | None = None
    if ports:
        code = path.read_text(encoding="utf-8")
        for fixed, free in ports.items():
            assert fixed in code, f"{file} has no {fixed}"
            code = code.replace(fixed, free)
        copy = path.with_name(f"_test_{os.getpid()}_{path.name}")
        copy.write_text(code, encoding="utf-8")
    try:
        process = await Process.start(sys.executable, str(copy or path), *args)
        try:
            yield process
        finally:
            await process.kill()
    finally:
        if copy is not None:
            copy.unlink()


async def run_example(file: str, *args: str) -> str:
    """Run an example to its end; it must exit 0 with nothing on stderr. Its output."""
    async with example(file, *args) as process:
        code = await process.wait()
        assert code == 0 and not process.errors, f"{file} exited {code}:\n{process.err}"
        return process.out


def load(file: str) -> ModuleType:
    """Import an example file as a module of its own (a fresh Agent each time)."""
    path = REPO / file
    spec = importlib.util.spec_from_file_location(f"readme_{path.stem}_{id(path)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SERVE_QUICKSTART = re.search(r"`(wot-agents serve server:agent\s+--http 8080 --ws)`", README)


@pytest.mark.parametrize(
    ("server", "stop"),
    [
        ("python server.py", signal.SIGINT),
        # "serves the same agent without the __main__ block", as the README says after the files
        (
            " ".join(SERVE_QUICKSTART[1].split()) if SERVE_QUICKSTART else "(not in the README)",
            signal.SIGTERM,
        ),
    ],
)
async def test_the_quickstart_runs_as_written(server: str, stop: int) -> None:
    port = free_port()
    words = server.replace("8080", str(port)).split()
    program = sys.executable if words[0] == "python" else str(BIN / words[0])
    process = await Process.start(program, *words[1:], cwd=QUICKSTART, env={**ENV, "PORT": str(port)})
    url = f"http://127.0.0.1:{port}/weather"
    try:
        await process.printed(re.escape(url))  # "Weather's TD: URL", "Weather: TD at URL"
        client = await Process.start(sys.executable, "client.py", url, cwd=QUICKSTART)
        try:
            assert await client.wait() == 0, client.err
        finally:
            await client.kill()
        assert client.lines == ["Sunny in Berlin for 2 day(s).", "Sunny tomorrow."]
        await process.stop(stop)  # Ctrl-C or SIGTERM: it returns, no traceback
    finally:
        await process.kill()


async def test_agent_description() -> None:
    out = await run_example("examples/agent_description.py")
    assert out == "WeatherAgent [] ['Weather forecast']"


async def test_weather_declares_an_agent() -> None:
    assert await run_example("examples/weather.py") == ""
    weather = load("examples/weather.py")
    td = weather.agent.description().to_dict()
    assert set(td["actions"]) == {"forecast"} and set(td["properties"]) == {"unit"}
    assert set(td["events"]) == {"alert"}
    assert td["actions"]["forecast"]["description"] == "Tells the forecast for a city."


async def test_bindings() -> None:
    lines = (await run_example("examples/bindings.py")).splitlines()
    urls = eval(lines[0], {})  # the dict base_urls printed
    assert set(urls) == {"http", "ws", "mqtt"} and urls["mqtt"].startswith("mqtt://127.0.0.1:")
    assert lines[1:] == ["{'city': 'Berlin', 'temperature': 21.0}", "celsius", "Storm warning"]


async def test_chat() -> None:
    assert (await run_example("examples/chat.py")).splitlines() == ["It will rain.", "It will rain."]


async def test_client_pool() -> None:
    weather, quickstart = load("examples/weather.py"), load("examples/quickstart/server.py")
    async with weather.agent.serve(http=True) as one, quickstart.agent.serve(http=True, ws=True) as two:
        out = await run_example("examples/client_pool.py", one.td_url, two.td_url)
    assert out.splitlines() == ["{'city': 'Berlin', 'temperature': 21.0}", "Sunny in Berlin for 1 day(s)."]


async def test_directory_client() -> None:
    async with running_directory(query_timeout=60.0) as url:  # a loaded machine indexes slowly
        out = await run_example("examples/directory_client.py", url)
    lines = out.splitlines()
    agent = "urn:uuid:6f1d3a7a-1f97-4e6b-b45f-f3c2e1c84c77"
    events = [line for line in lines if line.startswith("thing_")]
    assert events == [f"thing_created {agent}", f"thing_updated {agent}", f"thing_deleted {agent}"]
    assert any(re.fullmatch(r"WeatherAgent expires \d{4}-.*Z", line) for line in lines)
    assert f"True wot-agents directory 1 ['{agent}'] 1" in lines
    assert "404 Not Found" in lines


@pytest.mark.slow
async def test_routing() -> None:
    lines = (await run_example("examples/routing.py")).splitlines()
    assert lines[0].startswith("urn:example:billing ") and lines[0].endswith(" vector")
    assert lines[1].startswith("None ")  # the capital of Peru: no agent fits


@pytest.mark.slow
async def test_cascade() -> None:
    out = await run_example("examples/cascade.py")
    assert out.startswith("urn:example:weather cascade:")


@pytest.mark.slow
async def test_trust() -> None:
    async with running_directory() as url:
        out = await run_example("examples/trust.py", url)
    expected = "{'city': 'Berlin', 'temperature': 21.0}"
    assert out.splitlines() == ["True", f"https {expected}", f"wss {expected}", f"mqtts {expected}"]


@pytest.mark.slow
async def test_agents_are_announced_registered_and_found() -> None:
    """The tour's agent, then the discovery section's, each announced and registered until stopped
    (SIGTERM, then Ctrl-C), while browse.py finds the directory and watches them come and go."""
    async with AsyncExitStack() as stack:
        directory = await Process.start(
            str(BIN / "wot-agents"), "directory", "--memory", "--port", "0", "--announce"
        )
        stack.push_async_callback(directory.kill)
        url = (await directory.printed(r"directory listening on (\S+)/ "))[1]
        await directory.printed("directory announced")
        browse = await stack.enter_async_context(example("examples/browse.py"))
        await browse.printed(rf"^directory {re.escape(url)}/$")
        at = {"127.0.0.1:8081": url.removeprefix("http://")}
        seen = 0
        for file, ports, stop in [
            ("examples/tour.py", at, signal.SIGTERM),
            ("examples/announce.py", {**at, "0.0.0.0:8080": f"127.0.0.1:{free_port()}"}, signal.SIGINT),
        ]:
            async with example(file, ports=ports) as agent:
                async with aiohttp.ClientSession() as http:

                    async def registered(http: aiohttp.ClientSession = http) -> bool:
                        async with http.get(f"{url}/things/urn:example:weather") as response:
                            return response.status == 200

                    # Stopped even before the answer to its PUT arrived, an agent deregisters.
                    await eventually(registered, within=120, every=0.1)
                    await browse.printed(
                        r"^added Weather(-\d+)?\._wot\._tcp\.local\. http://\S+/weather valid$"
                    )
                    seen = len(browse.lines)
                    await agent.stop(stop)
                    assert not await registered()  # deregistered on the way out
                    await eventually(
                        lambda seen=seen: any(
                            line.startswith("removed Weather") for line in browse.lines[seen:]
                        ),
                        within=30,
                    )  # and the mDNS goodbye seen at once
                    browse.lines.clear()
                    directory.errors.clear()
        await browse.stop(signal.SIGINT)
        await directory.stop(signal.SIGINT)


# --- shell blocks --------------------------------------------------------------------------------


def commands(code: str) -> list[str]:
    """The command lines of a shell block, as one line each: continuations and quoted newlines
    joined, comments dropped; a trailing `` &`` kept."""
    lines, pending = [], ""
    for raw in code.splitlines():
        pending += raw + "\n"
        if raw.endswith("\\"):  # continued on the next line
            continue
        try:
            words = shlex.split(pending.replace("\\\n", " "), comments=True)
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        pending = ""
        if words:
            background = words[-1] == "&"
            lines.append(shlex.join(words[:-1] if background else words) + (" &" if background else ""))
    assert not pending, f"unterminated shell line: {pending!r}"
    return lines


def not_run_reason(command: str) -> str | None:
    return next((why for prefix, why in NOT_RUN_HERE.items() if command.startswith(prefix)), None)


Handler = Callable[["Terminal", list[str], bool], Awaitable[None]]
HANDLERS: dict[str, Handler] = {}


def handles(prefix: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        HANDLERS[prefix] = handler
        return handler

    return register


def handler_for(command: str) -> Handler | None:
    matches = [prefix for prefix in HANDLERS if (command + " ").startswith(prefix + " ")]
    return HANDLERS[max(matches, key=len)] if matches else None


class Terminal:
    """One shell, as a reader following the README: a fresh folder, the README's ports made free."""

    def __init__(self, folder: Path, stack: AsyncExitStack) -> None:
        self.folder, self.stack = folder, stack
        (folder / "examples").symlink_to(EXAMPLES)
        self.directory_port, self.runtime_port = free_port(), free_port()
        self.env = {
            **ENV,
            "WOT_AGENTS_DIRECTORY_PORT": str(self.directory_port),
            "WOT_AGENTS_RUNTIME_PORT": str(self.runtime_port),
            "WOT_AGENTS_DIRECTORY_QUERY_TIMEOUT": "60",  # a loaded machine indexes slowly
            "WOT_AGENTS_DIRECTORY_URL": f"http://127.0.0.1:{self.directory_port}",  # wot-agents search
            "PYTHONPATH": os.pathsep.join([str(EXAMPLES), ENV["PYTHONPATH"]]),  # from weather import...
        }
        self.background: list[tuple[str, Process]] = []
        self.directory: str | None = None
        self.agent: Any = None

    def localize(self, command: str) -> str:
        return command.replace("127.0.0.1:8081", f"127.0.0.1:{self.directory_port}").replace(
            "127.0.0.1:8080", f"127.0.0.1:{self.runtime_port}"
        )

    async def run(self, command: str) -> None:
        background = command.endswith("&")
        words = shlex.split(self.localize(command.removesuffix("&")))
        handler = handler_for(command)
        assert handler is not None, command
        await handler(self, words, background)

    async def start(self, words: list[str]) -> Process:
        program = shutil.which(words[0], path=self.env["PATH"])
        assert program is not None, f"{words[0]} is not installed"
        process = await Process.start(program, *words[1:], cwd=self.folder, env=self.env)
        self.stack.push_async_callback(process.kill)
        self.background.append((shlex.join(words), process))
        return process

    async def call(self, words: list[str], expect: int = 0) -> Process:
        process = await self.start(words)
        self.background.pop()
        code = await process.wait()
        assert code == expect, f"{shlex.join(words)}: exit {code}\n{process.out}\n{process.err}"
        return process

    async def serve_agent(self) -> None:
        """The Weather agent of examples/weather.py, announced by ``wot-agents serve``: what
        ``discover`` lines find (and registered where the terminal's directory runs)."""
        if self.agent is not None:
            return
        words = ["wot-agents", "serve", "weather:agent", "--http", "0", "--announce"]
        if self.directory is not None:
            words += ["--directory", self.directory]
        self.agent = await self.start(words)
        await self.agent.printed(r"http://127\.0\.0\.1:\d+/weather")

    async def stop_all(self) -> None:
        for command, process in reversed(self.background):
            try:
                await process.stop(signal.SIGINT)  # Ctrl-C
            except AssertionError as error:
                raise AssertionError(f"{command}: {error}") from None


@handles("wot-agents directory")
async def _directory(terminal: Terminal, words: list[str], background: bool) -> None:
    process = await terminal.start(words)
    terminal.directory = (await process.printed(r"directory listening on (\S+)/ "))[1]
    assert terminal.directory == f"http://127.0.0.1:{terminal.directory_port}"


@handles("python")
async def _python(terminal: Terminal, words: list[str], background: bool) -> None:
    """``python examples/X.py``: the example, its README ports made the terminal's."""
    source = terminal.folder / words[1]
    assert source.is_file(), words
    copy = terminal.folder / f"_{source.name}"
    copy.write_text(terminal.localize(source.read_text(encoding="utf-8")), encoding="utf-8")
    command = [sys.executable, str(copy), *words[2:]]
    if not background:
        await terminal.call(command)
        return
    assert terminal.directory is not None, f"{shlex.join(words)} &: no rule says when it is up"
    async with aiohttp.ClientSession() as http:

        async def count() -> int:
            async with http.get(f"{terminal.directory}/things") as response:
                return len(await response.json())

        before = await count()
        process = await terminal.start(command)

        async def registered() -> bool:
            assert process.process.returncode is None, process.err
            return await count() > before

        await eventually(registered, within=120, every=0.1)  # a server: up once it registered


@handles("wot-agents runtime")
async def _runtime(terminal: Terminal, words: list[str], background: bool) -> None:
    process = await terminal.start(words)
    url = f"http://127.0.0.1:{terminal.runtime_port}"
    async with aiohttp.ClientSession() as http:

        async def ready() -> bool:
            assert process.process.returncode is None, process.err
            try:
                async with http.get(f"{url}/health/readiness") as response:
                    return response.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await eventually(ready, within=240, every=0.2)  # the first start loads MiniLM


@handles("wot-agents validate")
async def _validate(terminal: Terminal, words: list[str], background: bool) -> None:
    process = await terminal.call(words)
    assert process.out.endswith(": valid"), process.out


@handles("wot-agents discover --watch")
async def _watch(terminal: Terminal, words: list[str], background: bool) -> None:
    await terminal.serve_agent()
    process = await terminal.start(words)
    await process.printed(r"\badded\b.*\bWeather\b")


@handles("wot-agents route")
async def _route(terminal: Terminal, words: list[str], background: bool) -> None:
    process = await terminal.call(words)
    assert re.search(r"^agent +urn:example:weather$", process.out, re.M), process.out


@handles("wot-agents search")
async def _search(terminal: Terminal, words: list[str], background: bool) -> None:
    process = await terminal.call(words)
    assert "urn:uuid:6f1d3a7a-1f97-4e6b-b45f-f3c2e1c84c77" in process.out, process.out  # the example's


@handles("curl")
async def _curl(terminal: Terminal, words: list[str], background: bool) -> None:
    if shutil.which("curl") is None:  # not on every Debian image: send what the line says ourselves
        status, text = await _as_curl(words, terminal.folder)
        assert status < 300, text
    else:
        text = (await terminal.call([*words, "--silent", "--show-error", "--fail-with-body"])).out
    if words[words.index("-X") + 1] == "PUT":  # a registration: 201 (curl fails on an error)
        return
    reply = json.loads(text)  # a turn: the members of the README's sample answer
    assert {"content", "anonymizationEntities", "agent", "routing"} <= set(reply), reply
    assert reply["content"] == "Light rain in the afternoon.", reply
    assert reply["agent"] == {"id": "urn:example:weather", "name": "Weather"}, reply
    assert {"method", "score", "reason", "subset", "ranking"} <= set(reply["routing"]), reply
    assert reply["routing"]["ranking"][0]["agentId"] == "urn:example:weather"


async def _as_curl(words: list[str], folder: Path) -> tuple[int, str]:
    method, headers, data, url = "GET", {}, b"", ""
    rest = iter(words[1:])
    for word in rest:
        if word == "-X":
            method = next(rest)
        elif word == "-H":
            name, _, value = next(rest).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            value = next(rest)
            data = (folder / value[1:]).read_bytes() if value.startswith("@") else value.encode()
            method = "POST" if method == "GET" else method
        else:
            assert not word.startswith("-"), f"curl option {word} not handled here"
            url = word
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, headers=headers, data=data) as response,
    ):
        return response.status, await response.text()


@pytest.mark.slow
@pytest.mark.parametrize("block", blocks("sh"), ids=str)
async def test_a_shell_block_runs(block: Block, tmp_path: Path) -> None:
    lines = commands(block.code)
    runnable = [line for line in lines if not_run_reason(line) is None]
    for line in set(lines) - set(runnable):
        print(f"{block}: not run here: {line!r}: {not_run_reason(line)}")
    if not runnable:
        pytest.skip("; ".join(f"{line!r} {not_run_reason(line)}" for line in lines))
    async with AsyncExitStack() as stack:
        terminal = Terminal(tmp_path, stack)
        for line in runnable:
            await terminal.run(line)
        await terminal.stop_all()


def test_not_run_lines_are_checked_elsewhere() -> None:
    made = subprocess.run(
        ["make", "-n", "demo", "test"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "examples/demo.py" in made.stdout and "-m pytest" in made.stdout
    for block in blocks("sh"):
        for line in commands(block.code):
            if line.startswith("kubectl apply -k"):
                assert (REPO / line.split()[-1] / "kustomization.yaml").is_file(), line


# --- the names the README uses -------------------------------------------------------------------


def section(title: str) -> str:
    """The README's text under the heading ``title``, up to the next heading of its level or above."""
    masked = FENCE.sub(lambda m: re.sub(r"(?m)^#", " ", m[0]), README)  # a shell comment is no heading
    match = re.search(rf"^(#+) {re.escape(title)}$", masked, re.M)
    assert match is not None, f"no section {title!r}"
    end = re.compile(rf"^#{{1,{len(match[1])}}} ", re.M).search(masked, match.end())
    return README[match.end() : end.start() if end else len(README)]


def test_the_first_screen_sets_up_with_exactly_two_commands() -> None:
    first = BLOCKS[0]
    assert first.lang == "sh" and first.code in section("Set up")
    assert commands(first.code) == ["make demo", "make test"]
    assert README[: README.index("## Set up")].count("\n") < 12  # near the top: the first screen


def test_the_pip_line_names_real_extras() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    extras = pyproject["project"]["optional-dependencies"]
    pip = [line for block in blocks("sh") for line in commands(block.code) if line.startswith("pip install")]
    assert len(pip) == 1, pip
    target = shlex.split(pip[0])[-1]
    match = re.fullmatch(r"\./wot-agents\[([\w,-]+)\]", target)
    assert match is not None, target
    assert set(match[1].split(",")) <= set(extras), match[1]
    assert pyproject["project"]["name"] == "wot-agents"  # the clone's folder, by default
    # The paragraph before it names every extra (but the tests'), and says what `all` holds.
    paragraph = README[: README.index(pip[0].split()[-1].strip("'"))].rsplit("\n\n", 2)[-2]
    named = set(re.findall(r"`([a-z-]+)`", paragraph))
    assert set(extras) - {"test"} <= named, set(extras) - named
    assert "`all` is\nall of them but `embeddings`" in paragraph
    bundled = set(re.findall(r"\[([\w,-]+)\]", " ".join(extras["all"]))[0].split(","))
    assert bundled == set(extras) - {"all", "test", "embeddings"}


def test_what_is_inside_lists_the_packages_there_are() -> None:
    table = section("What is inside")
    listed = set(re.findall(r"^\| `(\w+)/` \|", table, re.M))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {name.rstrip("*") for name in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert listed == packages
    for name in listed:
        assert (REPO / name / "__init__.py").is_file(), name


def _parsers() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every ``wot-agents`` (sub)command's parser, by its words: ("router", "eval")..."""
    from wot_agents.cli import build_parser

    found: dict[tuple[str, ...], argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        found[path] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, (*path, name))

    walk(build_parser(), ())
    return found


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


FLAG = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")
CODE_SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")


def _command_texts() -> list[str]:
    """Where the README writes ``wot-agents ...``: code spans, shell lines, and command table rows
    (whose description names more options of the same command)."""
    prose = FENCE.sub("", README)
    texts = [span for span in CODE_SPAN.findall(prose) if span.startswith("wot-agents ")]
    texts += [
        line for block in blocks("sh") for line in commands(block.code) if line.startswith("wot-agents ")
    ]
    texts += [row for row in prose.splitlines() if row.startswith("| `wot-agents ")]
    return texts


def _command(words: list[str]) -> tuple[str, ...]:
    """The (sub)command path ``words`` start with: ("router", "eval") for ``router eval --agents``."""
    parsers, path = _parsers(), ()
    while len(path) < len(words) and (*path, words[len(path)]) in parsers:
        path = (*path, words[len(path)])
    return path


def test_every_wot_agents_command_and_option_the_readme_names_exists() -> None:
    parsers = _parsers()
    problems = []
    for text in _command_texts():
        path = _command(text.removeprefix("| `").split()[1:])
        if not path:
            problems.append(f"no such command: {text[:60]!r}")
            continue
        allowed = _options(parsers[path])
        # A table row may name options of the other commands it names (`route`, `wot-agents ca issue`).
        for other in CODE_SPAN.findall(text):
            allowed |= _options(parsers[_command(other.removeprefix("wot-agents ").split())])
        unknown = set(FLAG.findall(text)) - allowed
        if unknown:
            problems.append(
                f"wot-agents {' '.join(path)} has no {', '.join(sorted(unknown))} ({text[:60]!r})"
            )
    assert not problems, "\n".join(problems)


def test_every_option_the_readme_names_exists() -> None:
    """Any ``--flag`` at all: one of the CLI's, or of ``make demo``'s examples/demo.py."""
    demo = set(re.findall(r'add_argument\("(--[\w-]+)"', (EXAMPLES / "demo.py").read_text(encoding="utf-8")))
    known = set().union(*map(_options, _parsers().values())) | demo
    assert set(FLAG.findall(README)) - known == set()


PACKAGES = ("wot_agents", "td_schemas", "registry", "discovery", "router", "runtime")
SOURCES = "\n".join(
    path.read_text(encoding="utf-8") for package in PACKAGES for path in (REPO / package).rglob("*.py")
)


def test_every_environment_variable_the_readme_names_is_read() -> None:
    from registry import DirectorySettings
    from runtime import RuntimeSettings

    settings = {"WOT_AGENTS_DIRECTORY_": DirectorySettings, "WOT_AGENTS_RUNTIME_": RuntimeSettings}

    def read(name: str) -> bool:
        """A settings field (``PREFIX`` + field name) or a name the sources read literally."""
        prefix = next((prefix for prefix in settings if name.startswith(prefix)), None)
        field = name.removeprefix(prefix or "").lower()
        return (prefix is not None and field in settings[prefix].model_fields) or f'"{name}"' in SOURCES

    pattern = r"\b((?:WOT_AGENTS|OPENAI)_[A-Z_]*[A-Z]|AGENT_REGISTRY_URL|ROUTER_TYPE)\b"
    unread = {name for name in re.findall(pattern, README) if not read(name)}
    # The configuration table: a prefix's variables written without it (`PORT`, `DB`...), and
    # LMOS's own names (`AGENT_REGISTRY_URL`).
    for prefix, text in re.findall(r"^\| `(WOT_AGENTS_\w+_)\*` \|(.*)$", README, re.M):
        names = re.findall(r"`([A-Z][A-Z_]+)`", text)
        assert len(names) >= 5, text
        unread |= {prefix + name for name in names if not (read(prefix + name) or read(name))}
    assert unread == set()


def test_every_file_and_folder_the_readme_names_exists() -> None:
    texts = [*CODE_SPAN.findall(README), *re.findall(r"\]\(([^)#]+)\)", README), *(b.code for b in BLOCKS)]
    top = "|".join(["examples", "docs", "bench", "scripts", "tests", "deploy", *PACKAGES])
    named = {m for text in texts for m in re.findall(rf"(?<![\w/.~-])((?:{top})/[\w./-]*)", text)}
    assert len(named) >= 30
    assert sorted(path for path in named if not (REPO / path.rstrip(".")).exists()) == []


def _resolve(dotted: str) -> bool:
    parts = dotted.split(".")
    obj: Any = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], 1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:
            obj = importlib.import_module(".".join(parts[: i + 1]))
        except ImportError:
            return False
    return True


def test_every_module_and_name_the_readme_names_exists() -> None:
    prose = FENCE.sub("", README)
    spans = CODE_SPAN.findall(prose)
    dotted = {
        m
        for span in spans
        for m in re.findall(rf"(?<![\w./-])((?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_]\w*)+)", span)
    }
    assert len(dotted) >= 5 and sorted(name for name in dotted if not _resolve(name)) == []
    # A class or error named alone (`ClientPool`, `PayloadError(...)`): public in some package.
    public = set()
    for package in PACKAGES:
        for info in pkgutil.walk_packages([str(REPO / package)], f"{package}."):
            if not any(part.startswith("_") for part in info.name.split(".")) and ".cli" not in info.name:
                public |= set(getattr(importlib.import_module(info.name), "__all__", ()))
        public |= set(getattr(importlib.import_module(package), "__all__", ()))
    # ... and a function called alone (`consume(td)`, `is_chat_agent(td)`).
    named = r"([A-Z]\w*[a-z]\w*)(\(.*\))?|([a-z_]\w*)\(.*\)"
    names = {m[1] or m[3] for span in spans if (m := re.fullmatch(named, span.strip()))}
    assert len(names) >= 30
    assert sorted(names - public - NOT_CODE) == []


#: Capitalised words in code spans that are not Python names of the project.
NOT_CODE = {
    "Accept", "Location",  # HTTP headers
    "Thing", "ThingDirectory", "WotThing",  # WoT types (TD @type, DID service type)
    "AgentRequest",  # the Arc agent request of LMOS
    "Ed25519",  # a signature algorithm
    "None", "True",  # Python constants
}  # fmt: skip


def test_the_command_table_lists_every_command() -> None:
    table = section("Command line")
    rows = set(re.findall(r"^\| `wot-agents ([\w-]+)", table, re.M))
    assert rows == {path[0] for path in _parsers() if path}


def test_every_link_within_the_readme_has_its_heading() -> None:
    def slug(heading: str) -> str:  # GitHub's anchors: lower case, punctuation dropped, spaces to -
        return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")

    anchors = {slug(heading) for heading in re.findall(r"^#+ (.+)$", FENCE.sub("", README), re.M)}
    links = set(re.findall(r"\]\(#([^)]+)\)", README))
    assert links and links - anchors == set()


def test_the_runtime_settings_the_readme_names_exist() -> None:
    from runtime import RuntimeSettings

    bullet = re.search(r"^- \*\*Runtime\*\*:.*?(?=^- |^$)", README, re.S | re.M)
    assert bullet is not None
    text = section("The chat runtime (`runtime/`)") + bullet[0]
    named = {span for span in CODE_SPAN.findall(text) if re.fullmatch(r"[a-z]+(_[a-z]+)+", span)}
    named -= {"runtime_channel_reload_failing"}  # a metric's name (tests/runtime checks it)
    assert len(named) >= 10 and sorted(named - set(RuntimeSettings.model_fields)) == []
