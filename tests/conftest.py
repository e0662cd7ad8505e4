"""Fixtures shared by the whole suite.

The suite must never reach the internet: an autouse guard refuses any socket connection to a
public address, so a test that would fetch a JSON-LD context or a model fails loudly instead.
Loopback, link-local, private (network-namespace test hosts) and multicast stay allowed.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


def _is_local(address: Any) -> bool:
    if not isinstance(address, tuple) or not address:
        return True  # AF_UNIX paths and the like
    try:
        ip = ipaddress.ip_address(str(address[0]).split("%")[0])
    except ValueError:
        return str(address[0]) == "localhost"
    return ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_multicast or ip.is_unspecified


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


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def weather_agent() -> dict[str, Any]:
    """The example LMOS Agent Description of examples/, as a fresh dict."""
    return load_json(REPO / "examples" / "weather-agent.json")  # type: ignore[no-any-return]


W3C_EXAMPLES = sorted((DATA / "w3c-td11-examples").glob("*.json"))


# --- real components -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real mosquitto broker on a free loopback port, for the whole session: its ``mqtt://`` URL."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        pytest.fail("mosquitto is not installed: run scripts/bootstrap.sh")
    directory = tmp_path_factory.mktemp("mosquitto")
    for _attempt in range(5):  # the free port may be taken between probing and binding
        port = _free_port()
        config = directory / "mosquitto.conf"
        # set_tcp_nodelay: without it each QoS 1 exchange waits ~40 ms for a delayed ACK.
        settings = ["allow_anonymous true", "persistence false", "log_dest stderr", "set_tcp_nodelay true"]
        config.write_text("\n".join([f"listener {port} 127.0.0.1", *settings, ""]))
        with (directory / "mosquitto.log").open("wb") as log:
            process = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
        if _wait_for_port(port, process):
            break
        process.kill()
        process.wait()
    else:
        pytest.fail(f"mosquitto did not start: {(directory / 'mosquitto.log').read_text()}")
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
