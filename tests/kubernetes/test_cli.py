"""``wot-agents directory --backend kubernetes`` as a process: it serves, fails clearly, and a
``kill -9`` in the middle of writes loses no acknowledged one."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from registry._kubernetes import THING_DESCRIPTIONS
from wot_agents import DirectoryClient, DirectoryError, KubeClient

from ._apiserver import KubeApiServer

REPO = Path(__file__).parents[2]


async def run_cli(*args: str, stderr: Any = asyncio.subprocess.PIPE) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wot_agents.cli", "directory", *args,
        stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env,
    )  # fmt: skip


@asynccontextmanager
async def directory_process(kube: KubeApiServer, namespace: str) -> AsyncIterator[tuple[str, Any]]:
    """The directory CLI on the kubernetes backend; its log (the access log) goes to a file."""
    log = kube.folder / f"directory-{namespace}.log"
    with log.open("wb") as stderr:
        proc = await run_cli(
            "--backend", "kubernetes", "--kubeconfig", str(kube.kubeconfig),
            "--namespace", namespace, "--port", "0", stderr=stderr,
        )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        found = re.search(r"listening on (http://\S+?)/? \(store: kubernetes, namespace (\S+)\)", line)
        assert found, line + log.read_text()
        assert found.group(2) == namespace
        yield found.group(1), proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await proc.communicate()  # reaps it and closes its pipes


async def test_a_bad_configuration_is_a_clear_error(tmp_path: Path) -> None:
    proc = await run_cli("--backend", "kubernetes", "--kubeconfig", str(tmp_path / "missing"))
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "cannot load the Kubernetes configuration" in stderr.decode()
    proc = await run_cli("--backend", "kubernetes", "--memory")
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and "--backend embedded" in stderr.decode()


async def test_kill_9_mid_write_loses_no_acknowledged_write(
    kube: KubeApiServer, kube_client: KubeClient, namespace: str, make_td: Any
) -> None:
    acknowledged: list[str] = []
    enough = asyncio.Event()
    async with directory_process(kube, namespace) as (url, proc), DirectoryClient(url) as client:

        async def write(worker: int) -> None:
            for n in range(1000):
                thing_id = f"urn:k8s:w{worker}-{n}"
                await client.register(make_td(id=thing_id))
                acknowledged.append(thing_id)
                if len(acknowledged) >= 40:
                    enough.set()

        writers = [asyncio.create_task(write(worker)) for worker in range(4)]
        await asyncio.wait_for(enough.wait(), 60)
        proc.send_signal(signal.SIGKILL)  # while the four writers are mid-request
        results = await asyncio.gather(*writers, return_exceptions=True)
    assert all(isinstance(r, DirectoryError) for r in results), results
    stored = {obj["spec"]["id"] for obj in (await kube_client.list(THING_DESCRIPTIONS, namespace))[0]}
    assert set(acknowledged) <= stored
    assert len(stored) - len(acknowledged) <= 4  # at most the writes cut off before their answer
