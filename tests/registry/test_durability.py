"""The embedded store through the real command: restart restores everything, kill -9 loses no
acknowledged write, SIGTERM shuts down gracefully."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.servers import eventually
from wot_agents import DirectoryClient, DirectoryError

from ._procs import alive, descendants

COUNT_GRAPHS = "SELECT (COUNT(DISTINCT ?g) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }"


@asynccontextmanager
async def cli_directory(db: Path, *extra: str) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wot_agents.cli", "directory", "--port", "0", "--db", str(db), *extra,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        match = re.search(r"listening on (http://\S+?)/? ", line)
        assert match, line
        yield match.group(1), process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_restart_restores_everything(tmp_path: Path, make_td: Any) -> None:
    db = tmp_path / "dir.db"
    async with cli_directory(db) as (url, process):
        async with DirectoryClient(url) as client:
            for i in range(20):
                await client.register(make_td(id=f"urn:example:{i:02}"))
            await client.delete("urn:example:05")
            before = [td async for td in client.list()]
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0  # graceful (the bound: a loaded machine)
    async with cli_directory(db) as (url, _):
        async with DirectoryClient(url) as client:
            after = [td async for td in client.list()]
            # A restarted directory rebuilds its SPARQL index from the store; until it caught up
            # it answers 503 "still indexing" (Retry-After): wait for that, not for a fixed time.
            found: dict[str, Any] = {}

            async def indexed() -> bool:
                try:
                    found.update(await client.sparql(COUNT_GRAPHS))
                except DirectoryError as exc:
                    if exc.status != 503:
                        raise
                    return False
                return True

            await eventually(indexed, within=60, every=0.2)
    strip = lambda tds: [{k: v for k, v in td.items() if k != "registration"} for td in tds]  # noqa: E731
    assert strip(after) == strip(before) and len(after) == 19
    assert int(found["results"]["bindings"][0]["n"]["value"]) == 19


async def test_kill_9_loses_no_acknowledged_write(tmp_path: Path, make_td: Any) -> None:
    db = tmp_path / "dir.db"
    acknowledged: list[str] = []
    async with cli_directory(db) as (url, process):
        async with DirectoryClient(url) as client:

            async def writer(n: int) -> None:
                for i in range(1000):
                    thing_id = f"urn:example:{n}-{i}"
                    await client.register(make_td(id=thing_id))
                    acknowledged.append(thing_id)

            tasks = [asyncio.create_task(writer(n)) for n in range(4)]
            while len(acknowledged) < 200:  # noqa: ASYNC110 (polling a plain list on purpose)
                await asyncio.sleep(0.01)
            helpers = descendants(process.pid)  # the SPARQL index's worker (and its forkserver)
            assert helpers
            process.kill()  # SIGKILL in the middle of writes
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(r, Exception) for r in results)
            for _ in range(200):  # they notice the server's end and exit: no orphan is left
                if not any(alive(pid) for pid in helpers):
                    break
                await asyncio.sleep(0.05)
            assert not any(alive(pid) for pid in helpers)
    async with cli_directory(db) as (url, _):
        async with DirectoryClient(url) as client:
            stored = {td["id"] async for td in client.list()}
            assert set(acknowledged) <= stored
            for thing_id in acknowledged[-5:]:
                assert (await client.get(thing_id))["id"] == thing_id
            for _ in range(30):  # re-indexing what was pending: 503 (retry) until it is done
                try:
                    found = await client.sparql(
                        "SELECT (COUNT(DISTINCT ?g) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }"
                    )
                    break
                except DirectoryError as exc:
                    assert exc.status == 503
                    await asyncio.sleep(1)
            assert int(found["results"]["bindings"][0]["n"]["value"]) == len(stored)


async def test_cli_protect_reads(tmp_path: Path, make_td: Any) -> None:
    # [tdd-things-read-only-auth] via the CLI: --protect-reads without --token is refused
    refused = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wot_agents.cli", "directory", "--memory", "--protect-reads",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(refused.communicate(), 20)
    assert refused.returncode == 2 and b"protect_reads needs a token" in err
    async with cli_directory(tmp_path / "d.db", "--token", "t", "--protect-reads") as (url, _):
        async with DirectoryClient(url) as anonymous:
            with pytest.raises(DirectoryError) as caught:
                await anonymous.count()
            assert caught.value.status == 401
        async with DirectoryClient(url, token="t") as client:
            await client.register(make_td())
            assert await client.count() == 1
