"""A private mosquitto broker on a free loopback port, for demos, benchmarks and tests.

Agents on MQTT need a broker; for trying things out on one machine, this starts Debian's
mosquitto (``apt-get install mosquitto``) with a throw-away configuration and stops it again.
It is not meant for production, where the broker is run and secured on its own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from ...trust._tls import TlsConfig

__all__ = ["LocalBroker", "find_mosquitto"]


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (Debian installs it in /usr/sbin, often not on PATH), or None."""
    return shutil.which("mosquitto", path=f"{os.environ.get('PATH', '')}:/usr/sbin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalBroker:
    """``with LocalBroker() as broker: broker.url`` (or ``async with``): a running mosquitto.

    ``log``: a file for the broker's log (default: discarded). Starting retries on a fresh port,
    since another process may take the probed one before mosquitto binds it. ``tls``: a TLS
    listener (``mqtts://``) that requires client certificates from the same CA (mutual TLS).
    ``acl``: the text of an ACL file the broker enforces.
    """

    def __init__(
        self,
        *,
        log: Path | None = None,
        start_timeout: float = 10.0,
        tls: TlsConfig | None = None,
        acl: str | None = None,
    ) -> None:
        self._log = log
        self._tls = tls
        #: The text of a mosquitto ACL file (``topic``/``pattern`` lines), to try deployments' rules.
        self._acl = acl
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self.url = ""

    def start(self) -> str:
        """Start the broker and return its ``mqtt://`` URL; raises when it cannot be started."""
        binary = find_mosquitto()
        if binary is None:
            raise FileNotFoundError(
                "mosquitto is not installed: apt-get install mosquitto (scripts/bootstrap.sh)"
            )
        self._folder = tempfile.TemporaryDirectory(prefix="wot-agents-mosquitto-")
        for _attempt in range(5):
            port = _free_port()
            config = Path(self._folder.name) / "mosquitto.conf"
            # set_tcp_nodelay: without it every QoS 1 exchange waits ~40 ms for a delayed ACK.
            tls = (
                f"cafile {self._tls.ca}\ncertfile {self._tls.cert}\nkeyfile {self._tls.key}\n"
                "require_certificate true\n" + ("user root\n" if os.geteuid() == 0 else "")
                # Started by root, mosquitto would become the user 'mosquitto', who cannot read
                # the caller's 0600 key: this throw-away broker stays who started it.
                if self._tls is not None
                else ""
            )
            acl = ""
            if self._acl is not None:
                acl_file = Path(self._folder.name) / "acl"
                acl_file.write_text(self._acl)
                acl = f"acl_file {acl_file}\n"
                if self._tls is None and os.geteuid() == 0:
                    acl += "user root\n"  # as for TLS: mosquitto's own user cannot read our folder
            config.write_text(
                f"listener {port} 127.0.0.1\n{tls}{acl}allow_anonymous true\npersistence false\n"
                "log_dest stderr\nset_tcp_nodelay true\n"
            )
            with open(self._log or os.devnull, "ab") as log:
                # Its own session: a Ctrl-C typed in the terminal (SIGINT to the whole foreground
                # group) reaches the program, which stops the broker after what uses it, not before.
                self._process = subprocess.Popen(
                    [binary, "-c", str(config)], stdout=log, stderr=log, start_new_session=True
                )
            if self._wait_until_listening(port):
                self.url = f"{'mqtts' if self._tls else 'mqtt'}://127.0.0.1:{port}"
                return self.url
            self.stop()
        raise RuntimeError(f"mosquitto did not start{f'; see {self._log}' if self._log else ''}")

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (benchmarks read its CPU time), else None."""
        return self._process.pid if self._process is not None else None

    def _wait_until_listening(self, port: int) -> bool:
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline and self._process is not None and self._process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    pass
                # The socket opens before TLS files are read: a bad file ends the process just after.
                try:
                    self._process.wait(timeout=0.1)
                except subprocess.TimeoutExpired:
                    return True
                return False
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop the broker; idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close(self) -> None:
        self.stop()
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> LocalBroker:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.close)
