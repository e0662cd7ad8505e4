"""Fixtures shared by the whole suite.

The suite must never reach any network but its own: an autouse guard refuses every socket
connection except to this machine (loopback), multicast, and the test LAN that the discovery
fixtures build in network namespaces, so a test that would fetch a JSON-LD context or a model,
or follow an address some peer advertised, fails loudly instead.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def weather_agent() -> dict[str, Any]:
    """The example LMOS Agent Description of examples/, as a fresh dict."""
    return load_json(REPO / "examples" / "weather-agent.json")  # type: ignore[no-any-return]


W3C_EXAMPLES = sorted((DATA / "w3c-td11-examples").glob("*.json"))


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
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Kubernetes API server (etcd + apiextensions-apiserver, tests/kubernetes/_apiserver.py)
    with the deploy/ CRDs applied, for the whole session; built on first use (minutes, once)."""
    from tests.kubernetes._apiserver import start_test_apiserver

    server = start_test_apiserver(tmp_path_factory.mktemp("kube"))
    try:
        yield server
    finally:
        server.stop()
