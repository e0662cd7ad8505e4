"""Fixtures shared by the whole suite.

The suite must never reach any network but its own: an autouse guard refuses every socket
connection except to this machine (loopback), multicast, and the test LAN that the discovery
fixtures build in network namespaces, so a test that would fetch a JSON-LD context or a model,
or follow an address some peer advertised, fails loudly instead.

Two more autouse guards (tests/guards.py) hold for every test: it leaves no task, thread,
socket or child process behind, and no event-loop callback blocks the loop for more than
0.1 s (``@pytest.mark.allow_blocking("why")`` for a test that knowingly does).
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import json
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.guards import BLOCKED, BlockingMonitor, Snapshot

if TYPE_CHECKING:
    from router import MiniLMEmbedder
    from tests.agents import Deployment

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


#: The network-namespace LAN of tests/discovery/conftest.py: hosts N are 10.251.0.N and fd00:77::N.
TEST_LAN = (ipaddress.ip_network("10.251.0.0/24"), ipaddress.ip_network("fd00:77::/64"))


def _is_local(address: Any) -> bool:
    if not isinstance(address, tuple) or not address:
        return True  # AF_UNIX paths and the like
    try:
        ip = ipaddress.ip_address(str(address[0]).split("%")[0])
    except ValueError:
        return str(address[0]) == "localhost"
    return ip.is_loopback or ip.is_multicast or ip.is_unspecified or any(ip in lan for lan in TEST_LAN)


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def guard(address: Any) -> None:
        if not _is_local(address):
            raise AssertionError(f"test tried to reach the network: {address!r}")

    def connect(self: socket.socket, address: Any) -> None:
        guard(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        guard(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield


_MONITOR = BlockingMonitor(BLOCKED)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "allow_blocking(reason): the test knowingly blocks the event loop (say why)"
    )
    config.addinivalue_line(
        "markers",
        "restarts_fixture_processes(reason): the test restarts processes a longer-lived fixture owns",
    )
    _MONITOR.install()
    # A background job of a non-interactive shell (a CI script, `nohup pytest &`) starts with
    # SIGINT ignored, and an ignored signal stays ignored across exec: every agent, directory or
    # CLI a test starts and then interrupts as Ctrl-C would never saw it (asyncio.run installs no
    # handler then), said no goodbye and was killed. Ctrl-C means here what it means in a terminal.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    _stop_on_sigterm()


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signum}")


def _stop_on_sigterm() -> None:
    """SIGTERM (a CI timeout, ``kill``) ends the run as Ctrl-C does: pytest then tears down every
    fixture, so the session's etcd, API server, mosquitto and llama.cpp server stop with it
    instead of outliving the run (SIGTERM's default action ends the process on the spot).
    Called again before each test: code under test that serves until a signal
    (``loop.add_signal_handler``) puts back the default action when it stops."""
    if signal.getsignal(signal.SIGTERM) is not _terminated:
        signal.signal(signal.SIGTERM, _terminated)


def pytest_unconfigure(config: pytest.Config) -> None:
    _MONITOR.uninstall()


_BEFORE = pytest.StashKey[Snapshot]()
_SETUP = pytest.StashKey[Snapshot]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    # Snapshots are taken here, outside any event loop: one reads every process's /proc stat file
    # (and a child's cmdline, which waits while that child forks or execs), and inside a loop
    # callback the guard would count its own wait as the test blocking the loop (0.13-0.31 s seen
    # in fixture set-up under load).
    item.stash[_SETUP] = Snapshot.take()
    _stop_on_sigterm()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    # Taken once every fixture is set up: what a session fixture starts meanwhile is not the test's
    # to stop. (The blocking guard holds from the first fixture on: a server or a store blocking the
    # loop while it starts blocks it in production too.)
    item.stash[_BEFORE] = Snapshot.take()
    return (yield)


@pytest.fixture(autouse=True)
async def no_leaks_no_blocking(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Fail a test that leaves a task, thread, socket or child process behind, or blocks the loop."""
    _MONITOR.take()
    yield
    before = request.node.stash.get(_BEFORE, None) or request.node.stash[_SETUP]
    blocked = _MONITOR.take()
    # A restarted fixture process outlives the test by design: it is its fixture's to stop.
    processes = request.node.get_closest_marker("restarts_fixture_processes") is None
    leaked = before.leaks(processes=processes)
    for _ in range(150):  # cancelled tasks, closing transports and exiting children need a moment
        if not leaked:
            break
        await asyncio.sleep(0.02)
        leaked = before.leaks(processes=processes)
    problems = [f"left behind: {', '.join(leaked)}"] if leaked else []
    if blocked and request.node.get_closest_marker("allow_blocking") is None:
        problems.append(f"blocked the event loop over {BLOCKED} s: " + "; ".join(blocked))
    if problems:
        raise AssertionError("\n".join(problems))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def weather_agent() -> dict[str, Any]:
    """The example LMOS Agent Description of examples/, as a fresh dict."""
    return load_json(REPO / "examples" / "weather-agent.json")  # type: ignore[no-any-return]


W3C_EXAMPLES = sorted((DATA / "w3c-td11-examples").glob("*.json"))
EXAMPLE = REPO / "examples" / "weather-agent.json"


@pytest.fixture
def make_td() -> Callable[..., dict[str, Any]]:
    """A valid Agent Description (examples/weather-agent.json); keyword arguments override members
    (``lmos__x`` for ``lmos:x``; None removes one)."""
    base = load_json(EXAMPLE)

    def make(**members: Any) -> dict[str, Any]:
        td = copy.deepcopy(base)
        for key, value in members.items():
            key = key.replace("__", ":")
            if value is None:
                td.pop(key, None)
            else:
                td[key] = value
        return td

    return make


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def directory() -> AsyncIterator[str]:
    """A directory (SQLite in memory, a 0.2 s purge) on a free loopback port: its base URL.

    tests/registry overrides it to run each test on every store.
    """
    from tests.servers import running_directory

    async with running_directory(purge_interval=0.2) as url:
        yield url


@pytest.fixture
def _deployment_imports() -> None:
    """The modules ``deployment`` uses, imported off the event loop: importing ``registry`` alone
    takes ~0.12 s, over the blocking guard's limit, when no earlier test imported it."""
    import registry  # noqa: F401
    import tests.agents  # noqa: F401


@pytest.fixture
async def deployment(minilm: MiniLMEmbedder, _deployment_imports: None) -> AsyncIterator[Deployment]:
    """A directory on a free port and a ``tests.agents.Deployment`` around it: add agents, then
    ``start()`` a runtime following the directory (runtime, trust and page tests)."""
    from contextlib import AsyncExitStack

    from registry import create_app
    from tests.agents import Deployment
    from wot_agents import serve_app

    async with AsyncExitStack() as stack:
        directory = await stack.enter_async_context(serve_app(create_app(), shutdown_timeout=1))
        yield Deployment(directory, stack, minilm)


# --- real components -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real mosquitto broker on a free loopback port, for the whole session: its ``mqtt://`` URL."""
    from wot_agents.bindings.mqtt import LocalBroker, find_mosquitto

    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: run scripts/bootstrap.sh")
    with LocalBroker(log=tmp_path_factory.mktemp("mosquitto") / "mosquitto.log") as broker:
        yield broker.url


@pytest.fixture(scope="session")
def minilm() -> Any:
    """The real MiniLM embedder (router and runtime tests), loaded once for the session."""
    from router import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    embedder.embed(["warm up"])
    return embedder


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """The real llama.cpp server (tests/servers.py) with SmolLM2 answering chat completions."""
    from tests.servers import llama_cpp_server

    with llama_cpp_server("--n_ctx", "2048") as base_url:
        yield base_url


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Kubernetes API server (etcd + apiextensions-apiserver, tests/kubernetes/_apiserver.py)
    with the deploy/ CRDs applied, for the whole session; built on first use (minutes, once)."""
    from tests.kubernetes._apiserver import start_test_apiserver

    server = start_test_apiserver(tmp_path_factory.mktemp("kube"))
    try:
        yield server
    finally:
        server.stop()
