"""The SPARQL index's worker process: consistency with acknowledged writes, restarts, no orphans."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from registry import DIRECTORY, Directory, DirectorySettings
from tests.servers import eventually
from wot_agents import DirectoryClient, DirectoryError

from ._procs import alive
from .conftest import running_app

COUNT = "SELECT (COUNT(DISTINCT ?g) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Directory]]:
    async with running_app(db=tmp_path / "d.db", query_timeout=10.0) as (url, app):
        yield url, app[DIRECTORY]


async def _put(http: aiohttp.ClientSession, url: str, td: dict[str, Any]) -> None:
    async with http.put(f"{url}/things/{td['id']}", json=td) as r:
        assert r.status in (201, 204), await r.text()


async def _count_when_ready(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    """The count, retrying while the index answers 503 (catching up), as its Retry-After says.

    Up to two minutes, for a loaded machine's slow catch-up; a ready index ends the wait at once.
    """
    for _ in range(120):
        answer = await _count(http, url)
        if answer[0] != 503:
            return answer
        await asyncio.sleep(1)
    return answer


async def _count(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(f"{url}/search/sparql", params={"query": COUNT}) as r:
        body = await r.json(content_type=None)
        if r.status != 200:
            return r.status, (body, r.headers.get("Retry-After"))
        return 200, int(body["results"]["bindings"][0]["n"]["value"])


async def _worker_pid(directory: Directory, not_: int | None = None) -> int:
    """The index process's pid, once it runs (it starts in the background)."""
    for _ in range(200):
        pid = directory.rdf.worker_pid
        if pid is not None and pid != not_:
            return pid
        await asyncio.sleep(0.05)
    raise AssertionError("no SPARQL index process")


async def _wait_gone(pid: int, seconds: float = 10) -> bool:
    for _ in range(int(seconds * 20)):
        if not alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_query_sees_every_write_acknowledged_before_it(
    served: tuple[str, Directory], http: aiohttp.ClientSession, make_td: Any
) -> None:
    url, directory = served
    assert await _worker_pid(directory) != os.getpid()
    for round_ in range(3):
        tds = [make_td(id=f"urn:example:{round_}-{i}") for i in range(20)]
        await asyncio.gather(*(_put(http, url, td) for td in tds))
        assert await _count(http, url) == (200, 20 * (round_ + 1))  # no waiting, no polling


async def test_a_stalled_index_answers_503_then_catches_up(
    served: tuple[str, Directory], http: aiohttp.ClientSession, make_td: Any
) -> None:
    url, directory = served
    directory.rdf.query_timeout = 0.5  # how long a query waits for the index before the 503
    pid = await _worker_pid(directory)
    await _put(http, url, make_td(id="urn:example:before"))
    assert await _count_when_ready(http, url) == (200, 1)
    os.kill(pid, signal.SIGSTOP)  # the index cannot make progress
    try:
        # Writes do not wait for the index; 300 make the worker take its bulk-loading path.
        sem = asyncio.Semaphore(16)

        async def put(i: int) -> None:
            async with sem:
                await _put(http, url, make_td(id=f"urn:example:during-{i:03}"))

        await asyncio.gather(*(put(i) for i in range(300)))
        status, (problem, retry_after) = await _count(http, url)
        assert status == 503 and "300 descriptions to go" in problem["detail"] and int(retry_after) >= 1
    finally:
        os.kill(pid, signal.SIGCONT)
    assert await _count_when_ready(http, url) == (200, 301)


async def test_a_killed_worker_is_restarted_and_loses_nothing(
    served: tuple[str, Directory], http: aiohttp.ClientSession, make_td: Any
) -> None:
    url, directory = served
    pid = await _worker_pid(directory)
    os.kill(pid, signal.SIGSTOP)
    await asyncio.gather(*(_put(http, url, make_td(id=f"urn:example:{i}")) for i in range(10)))
    os.kill(pid, signal.SIGKILL)  # dies with all ten writes unindexed
    assert await _wait_gone(pid)
    await _worker_pid(directory, not_=pid)
    assert await _count_when_ready(http, url) == (200, 10)


async def test_closing_ends_the_worker(tmp_path: Path) -> None:
    async with Directory(DirectorySettings(db=tmp_path / "d.db")) as directory:
        pid = await _worker_pid(directory)
        assert alive(pid)
    assert not alive(pid)  # joined on close, not left behind


def _statuses() -> tuple[aiohttp.TraceConfig, list[int]]:
    """A trace config recording the status of every answer a session gets, in order."""
    statuses: list[int] = []

    async def ended(session: Any, context: Any, params: aiohttp.TraceRequestEndParams) -> None:
        statuses.append(params.response.status)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(ended)
    return trace, statuses


async def test_the_client_asks_again_while_the_index_catches_up_as_retry_after_says(
    served: tuple[str, Directory], http: aiohttp.ClientSession, make_td: Any
) -> None:
    url, directory = served
    directory.rdf.query_timeout = 0.5  # how long a query waits for the index before the 503
    pid = await _worker_pid(directory)
    await _put(http, url, make_td(id="urn:example:before"))
    assert await _count_when_ready(http, url) == (200, 1)
    trace, statuses = _statuses()
    os.kill(pid, signal.SIGSTOP)  # the index cannot make progress
    try:
        await asyncio.gather(*(_put(http, url, make_td(id=f"urn:example:during-{i}")) for i in range(3)))
        async with (
            aiohttp.ClientSession(trace_configs=[trace]) as session,
            DirectoryClient(url, session=session, busy_timeout=600) as client,
        ):
            query = asyncio.create_task(client.sparql(COUNT))
            await eventually(lambda: 503 in statuses, within=120)
            os.kill(pid, signal.SIGCONT)
            result = await query
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result["results"]["bindings"][0]["n"]["value"] == "4"
    assert statuses[0] == 503 and statuses[-1] == 200


@asynccontextmanager
async def _stuck_index(
    served: tuple[str, Directory], http: aiohttp.ClientSession, make_td: Any
) -> AsyncIterator[str]:
    """The directory's URL while its index process is stopped with a description it has not
    indexed: every SPARQL query gets 503 with ``Retry-After`` after 0.5 s."""
    url, directory = served
    directory.rdf.query_timeout = 0.5
    pid = await _worker_pid(directory)
    os.kill(pid, signal.SIGSTOP)
    try:
        await _put(http, url, make_td(id="urn:example:unindexed"))
        yield url
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_the_client_gives_up_on_a_busy_index_after_busy_timeout(
    served: tuple[str, Directory], http: aiohttp.ClientSession, make_td: Any
) -> None:
    async with _stuck_index(served, http, make_td) as url, DirectoryClient(url, busy_timeout=1.5) as client:
        with pytest.raises(DirectoryError) as raised:
            await client.sparql(COUNT)
    assert raised.value.status == 503 and "still indexing" in str(raised.value)
    assert "still busy after" in str(raised.value) and "busy_timeout=1.5 s" in str(raised.value)
    assert raised.value.waited is not None and 0 < raised.value.waited <= 1.5


async def test_the_search_command_says_how_long_it_waited_for_a_busy_index(
    served: tuple[str, Directory], http: aiohttp.ClientSession, make_td: Any
) -> None:
    async with _stuck_index(served, http, make_td) as url:
        search = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wot_agents.cli", "search", "--directory", url,
            "--busy-timeout", "1.5", "--sparql", COUNT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await search.communicate()
    message = err.decode()
    assert search.returncode == 1 and not out, message
    assert message.startswith("wot-agents search: ") and "still indexing" in message, message
    assert "still busy after" in message and "--busy-timeout 1.5 waits longer" in message, message
    assert "Traceback" not in message
