"""The suite's own guard: nothing but this machine and the test LAN may be reached."""

from __future__ import annotations

import socket

import pytest


@pytest.mark.parametrize("address", ["192.0.2.1", "10.0.0.1", "8.8.8.8", "169.254.1.1"])
def test_connections_outside_the_test_networks_are_refused(address: str) -> None:
    with socket.socket() as sock, pytest.raises(AssertionError, match="tried to reach the network"):
        sock.connect((address, 80))


def test_loopback_is_allowed() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=1):
            pass
