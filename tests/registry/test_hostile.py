"""Requests that once took a feature down, answered 500 or changed what was stored (issue 15:
third-party clients, a public corpus, a fuzzer, a kill -9 loop): each must now get a clear 4xx
and leave the directory whole."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pyoxigraph as ox
import pytest

from registry import DIRECTORY, Directory
from registry._json import MAX_DEPTH
from registry._rdf_worker import Indexer
from wot_agents import DirectoryClient, DirectoryError

from ._procs import alive, descendants
from .conftest import running_app, running_directory
from .test_durability import cli_directory

COUNT = "SELECT (COUNT(DISTINCT ?g) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }"
#: A three-way cross product whose filter needs all three: no index or push-down helps, and over
#: ten descriptions (~10^9 combinations) it runs for minutes.
SLOW = (
    "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i "
    'FILTER(STR(?c) = CONCAT(STR(?f), STR(?i), "never")) }'
)


def nested(levels: int) -> Any:
    """An object ``levels`` deep: {"a": {"a": ... {} }}."""
    value: Any = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


async def _count(client: DirectoryClient, *, retry: bool = True) -> int:
    """The number of descriptions in the SPARQL index; with ``retry``, waiting out its 503s."""
    for _ in range(120):
        try:
            found = await client.sparql(COUNT)
            return int(found["results"]["bindings"][0]["n"]["value"])
        except DirectoryError as exc:
            if exc.status != 503 or not retry:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("the SPARQL index did not come back")


async def _worker_pid(directory: Directory, not_: int | None = None) -> int:
    for _ in range(400):
        pid = directory.rdf.worker_pid
        if pid is not None and pid != not_:
            return pid
        await asyncio.sleep(0.05)
    raise AssertionError("no SPARQL index process")


async def _gone(pid: int, seconds: float = 20) -> bool:
    for _ in range(int(seconds * 20)):
        if not alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.fixture
async def memory_directory() -> AsyncIterator[tuple[str, Directory]]:
    async with running_app(query_timeout=2.0) as (url, app):
        yield url, app[DIRECTORY]


# -- the SPARQL index stays available ---------------------------------------------------------------
async def test_a_deeply_nested_query_is_refused_before_the_engine(
    memory_directory: tuple[str, Directory], make_td: Any
) -> None:
    url, directory = memory_directory
    async with DirectoryClient(url) as client:
        await client.register(make_td())
        pid = await _worker_pid(directory)
        with pytest.raises(DirectoryError) as caught:
            await client.sparql("SELECT * WHERE " + "{" * 3000 + "?s ?p ?o" + "}" * 3000)
        assert caught.value.status == 400 and "limit is 100" in caught.value.problem["detail"]
        assert await _count(client, retry=False) == 1
    assert directory.rdf.worker_pid == pid and directory.rdf.restarts == 0


async def test_an_in_memory_index_is_complete_again_after_its_process_died(
    memory_directory: tuple[str, Directory], make_td: Any
) -> None:
    url, directory = memory_directory
    async with DirectoryClient(url) as client:
        for i in range(5):
            await client.register(make_td(id=f"urn:example:{i}"))
        assert await _count(client) == 5
        pid = await _worker_pid(directory)
        os.kill(pid, signal.SIGKILL)  # its whole index is lost with it
        await _worker_pid(directory, not_=pid)
        assert await _count(client) == 5  # 503 while rebuilding, never an incomplete answer


async def test_a_query_over_its_time_limit_stops_and_the_next_ones_are_answered(
    memory_directory: tuple[str, Directory], make_td: Any
) -> None:
    url, directory = memory_directory
    async with DirectoryClient(url) as client:
        for i in range(10):
            await client.register(make_td(id=f"urn:example:{i}"))
        assert await _count(client) == 10
        pid = await _worker_pid(directory)
        # Two at once: both of the process's query threads.
        slow = await asyncio.gather(client.sparql(SLOW), client.sparql(SLOW), return_exceptions=True)
        assert all(isinstance(r, DirectoryError) and r.status in (400, 503) for r in slow), slow
        assert any(
            isinstance(r, DirectoryError) and "longer than the limit" in r.problem["detail"] for r in slow
        )
        assert await _gone(pid)  # the work stopped: the process running it was replaced
        assert await _count(client) == 10  # and the next query is answered


async def test_the_index_process_ends_with_a_killed_server(
    tmp_path: Path, make_td: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WOT_AGENTS_DIRECTORY_QUERY_TIMEOUT", "600")  # the query would run on
    async with cli_directory(tmp_path / "d.db") as (url, process), DirectoryClient(url) as client:
        for i in range(10):
            await client.register(make_td(id=f"urn:example:{i}"))
        assert await _count(client) == 10
        helpers = descendants(process.pid)
        busy = asyncio.create_task(client.sparql(SLOW))
        # The index process is the forkserver's child (the server's other helper: the resource tracker).
        (worker,) = [pid for pid in helpers if _stat(pid)[1] != str(process.pid)]
        start = _cpu_time(worker)
        for _ in range(400):  # half a second of CPU: it is evaluating
            if _cpu_time(worker) >= start + 50:
                break
            await asyncio.sleep(0.05)
        process.kill()
        for pid in helpers:
            assert await _gone(pid), f"{pid} outlived the server"
        with pytest.raises(DirectoryError):  # the server is gone
            await busy


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat past the command's name: state, ppid, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_time(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks


async def test_restarts_back_off_and_resume_by_themselves(tmp_path: Path, make_td: Any) -> None:
    db = tmp_path / "d.db"
    # The index's lock, as an orphan of a killed run held it. RocksDB opens and syncs files (0.3 s
    # under I/O load): opened, and closed by dropping the last reference, on a worker thread.
    held = [await asyncio.to_thread(ox.Store, str(db) + ".rdf")]
    async with running_app(db=db, query_timeout=1.0) as (url, app), DirectoryClient(url) as client:
        directory: Directory = app[DIRECTORY]
        await client.register(make_td())
        while directory.rdf.restarts < 4:  # noqa: ASYNC110 (a counter, polled)
            await asyncio.sleep(0.05)
        assert directory.rdf.backoff >= 0.8  # 0.2, 0.4, 0.8, ... up to 30 s: not a busy loop
        with pytest.raises(DirectoryError) as caught:
            await client.sparql(COUNT)
        assert caught.value.status == 503
        await asyncio.to_thread(held.clear)  # the lock is free again
        assert await _count(client) == 1


async def test_sigterm_to_the_process_group_stops_the_index_without_a_restart(tmp_path: Path) -> None:
    # A terminal's Ctrl-C or a supervisor's SIGTERM reaches every process of the group.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wot_agents.cli", "directory", "--port", "0", "--memory",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        await asyncio.wait_for(process.stdout.readline(), 20)
        for _ in range(200):  # the index process starts in the background, after its forkserver
            if len(descendants(process.pid)) >= 3:  # and the resource tracker
                break
            await asyncio.sleep(0.05)
        helpers = descendants(process.pid)
        os.killpg(process.pid, signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert b"restarting" not in err and b"Traceback" not in err, err.decode()
    for pid in helpers:
        assert await _gone(pid)


async def test_sigterm_is_the_servers_to_act_on(
    memory_directory: tuple[str, Directory], make_td: Any
) -> None:
    url, directory = memory_directory
    async with DirectoryClient(url) as client:
        await client.register(make_td())
        assert await _count(client) == 1
        pid = await _worker_pid(directory)
        os.kill(pid, signal.SIGTERM)  # as `kill -TERM -PGID` delivers it to every process
        assert await _count(client, retry=False) == 1  # answered by the same process
    assert alive(pid) and directory.rdf.worker_pid == pid and directory.rdf.restarts == 0


def test_one_description_the_converter_cannot_take_leaves_the_others_indexed(make_td: Any) -> None:
    indexer = Indexer(ox.Store())
    good = [make_td(id=f"urn:example:{i}") for i in range(3)]
    deep = make_td(id="urn:example:deep", **{"ex:deep": nested(900)})  # stored by an older version
    changes = [(td["id"], json.dumps(td).encode()) for td in (good[0], deep, good[1], good[2])]
    failures = indexer.index(changes)
    assert [thing_id for thing_id, _ in failures] == ["urn:example:deep"]
    graphs = {g.value for g in indexer.store.named_graphs()}
    assert graphs == {td["id"] for td in good}


# -- what is stored is what was sent; deeper than the indexes take is refused ------------------------
@pytest.mark.parametrize(
    ("member", "detail"),
    [
        ('{"ex:n": 1e400}', "64-bit float"),
        ('{"ex:n": -1e400}', "64-bit float"),
        ('{"ex:n": 1e-400}', "64-bit float"),
        ('{"ex:n": ' + "9" * 5000 + "}", "4300 digits"),
        (json.dumps({"ex:deep": nested(MAX_DEPTH)}), f"limit of {MAX_DEPTH} levels"),
    ],
)
async def test_what_cannot_be_kept_or_indexed_is_refused(
    directory: str, http: aiohttp.ClientSession, make_td: Any, member: str, detail: str
) -> None:
    body = json.dumps(make_td(id="urn:example:x"))[:-1] + "," + member[1:]
    async with http.put(
        f"{directory}/things/urn:example:x", data=body, headers={"Content-Type": "application/td+json"}
    ) as r:
        assert r.status == 400 and detail in (await r.json(content_type=None))["detail"]
    async with http.get(f"{directory}/things/urn:example:x") as r:
        assert r.status == 404


async def test_the_deepest_accepted_description_is_in_both_indexes(
    memory_directory: tuple[str, Directory], make_td: Any
) -> None:
    url, _ = memory_directory
    async with DirectoryClient(url) as client:
        await client.register(make_td(id="urn:example:deep", **{"ex:deep": nested(MAX_DEPTH - 1)}))
        await client.register(make_td(id="urn:example:flat"))
        assert await _count(client) == 2
        assert len(await client.jsonpath("$..a")) == MAX_DEPTH - 2  # every level, from the root


async def test_filters_with_numbers_past_the_limits_are_400(
    directory: str, http: aiohttp.ClientSession
) -> None:
    huge = "9" * 5000
    async with http.post(
        f"{directory}/search/filter",
        data='{"filter": {"id": ' + huge + "}}",
        headers={"Content-Type": "application/json"},
    ) as r:
        assert r.status == 400
    async with http.get(f"{directory}/search/filter", params={"filter": '{"id": ' + huge + "}"}) as r:
        assert r.status == 400
    async with http.post(f"{directory}/search/filter", json={"sort": 5}) as r:
        assert r.status == 400 and "sort" in (await r.json(content_type=None))["detail"]
    deep = json.dumps(nested(900)).replace('"a"', '"not"')
    async with http.post(
        f"{directory}/search/filter", data=deep, headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 400


# -- JSONPath --------------------------------------------------------------------------------------
async def test_jsonpath_nesting_past_the_parser_is_400(directory: str, http: aiohttp.ClientSession) -> None:
    query = "$[?" + "(" * 2000 + "@.id" + ")" * 2000 + "]"
    async with http.get(f"{directory}/search/jsonpath", params={"query": query}) as r:
        assert r.status == 400


async def test_jsonpath_root_inside_a_filter_is_the_whole_array(directory: str, make_td: Any) -> None:
    async with DirectoryClient(directory) as client:
        for name in ("a", "b", "c"):
            await client.register(make_td(id=f"urn:{name}", title=name.upper()))
        assert await client.jsonpath("$[?@.id == $[0].id].id") == ["urn:a"]
        # With a top-level equality too (the pre-selected path): $ is still every description.
        assert await client.jsonpath("$[?@.title == 'A' && $[1].id == 'urn:b'].id") == ["urn:a"]


def _evaluating() -> bool:
    """Whether any thread is inside the JSONPath library right now."""
    for frame in sys._current_frames().values():
        while frame is not None:
            if "jsonpath_rfc9535" in frame.f_code.co_filename:
                return True
            frame = frame.f_back  # type: ignore[assignment]
    return False


async def test_a_jsonpath_query_over_its_time_limit_stops(make_td: Any) -> None:
    async with running_directory(query_timeout=0.5) as url, DirectoryClient(url) as client:
        for i in range(100):
            await client.register(make_td(id=f"urn:example:{i:03}"))
        with pytest.raises(DirectoryError) as caught:
            # every description scans all of them: quadratic, ~20 s of work without the limit
            await client.jsonpath("$[?count($..[?count(@..*) > 0]) < 0].id")
        assert caught.value.status == 400 and "limit" in caught.value.problem["detail"]
        for _ in range(200):
            if not _evaluating():
                break
            await asyncio.sleep(0.05)
        assert not _evaluating()
        assert not [t for t in threading.enumerate() if t.name == "wot-directory-jsonpath"]


# -- HTTP ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
async def test_the_auth_scheme_is_case_insensitive(
    http: aiohttp.ClientSession, make_td: Any, scheme: str
) -> None:
    # RFC 9110 11.1: "It uses a case-insensitive token to identify the authentication scheme"
    async with running_directory(token="s3cret") as url:
        td = make_td(id="urn:example:auth")
        async with http.put(
            f"{url}/things/urn:example:auth", json=td, headers={"Authorization": f"{scheme} s3cret"}
        ) as r:
            assert r.status == 201
        async with http.delete(
            f"{url}/things/urn:example:auth", headers={"Authorization": "bearer wrong"}
        ) as r:
            assert r.status == 401


# -- SPARQL datasets and federation ----------------------------------------------------------------
async def test_sparql_from_chooses_the_default_graph(
    memory_directory: tuple[str, Directory], make_td: Any
) -> None:
    url, _ = memory_directory
    async with DirectoryClient(url) as client:
        await client.register(make_td(id="urn:example:one"))
        await client.register(make_td(id="urn:example:two", title="Two", description="The second one"))
        assert await _count(client) == 2

        async def triples(query: str) -> int:
            found = await client.sparql(query)
            return int(found["results"]["bindings"][0]["n"]["value"])

        everything = await triples("SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }")
        one = await triples("SELECT (COUNT(*) AS ?n) WHERE { GRAPH <urn:example:one> { ?s ?p ?o } }")
        assert 0 < one < everything
        assert await triples("SELECT (COUNT(*) AS ?n) FROM <urn:example:one> WHERE { ?s ?p ?o }") == one
        named = "SELECT (COUNT(*) AS ?n) FROM NAMED <urn:example:two> WHERE { GRAPH ?g { ?s ?p ?o } }"
        assert await triples(named) == everything - one
        # "from" in a literal or a variable's name is not a dataset clause
        literal = 'SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?from BIND("FROM <urn:x>" AS ?text) }'
        assert await triples(literal) == everything


@pytest.mark.parametrize(
    "service",
    ["<http://127.0.0.1:2/sparql>", "?endpoint", "<http://127.0.0.1:1/sparql/>"],
)
async def test_sparql_service_is_limited_to_the_allowed_endpoints(make_td: Any, service: str) -> None:
    async with running_directory(sparql_services=["http://127.0.0.1:1/sparql"]) as url:
        async with DirectoryClient(url) as client:
            with pytest.raises(DirectoryError) as caught:
                await client.sparql(f"SELECT * WHERE {{ SERVICE {service} {{ ?s ?p ?o }} }}")
    assert caught.value.status == 400 and "<http://127.0.0.1:1/sparql>" in caught.value.problem["detail"]


# -- event streams ---------------------------------------------------------------------------------
async def test_the_first_frame_of_an_event_stream_is_an_event(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    # A comment before it became an empty event (no id, type or data) in the Go r3labs/sse client.
    async with http.get(f"{directory}/events") as stream:
        assert stream.status == 200  # subscribed once the headers are there
        async with DirectoryClient(directory) as client:
            await client.register(make_td(id="urn:example:first"))
        first = await asyncio.wait_for(stream.content.readuntil(b"\n\n"), 10)
    assert first.startswith(b"event: thing_created\n"), first


async def test_an_event_is_encoded_once_for_every_subscriber(
    make_td: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import registry._events as events

    encoded = 0
    real = events.json

    class Counting:
        @staticmethod
        def dumps(value: Any, **options: Any) -> str:
            nonlocal encoded
            encoded += 1
            return real.dumps(value, **options)

        loads = staticmethod(real.loads)

    monkeypatch.setattr(events, "json", Counting)
    async with running_directory() as url, aiohttp.ClientSession() as http:
        streams = [await http.get(f"{url}/events/thing_created") for _ in range(5)]
        async with DirectoryClient(url) as client:
            await client.register(make_td(id="urn:example:once"))
        frames = [await asyncio.wait_for(s.content.readuntil(b"\n\n"), 10) for s in streams]
        for s in streams:
            s.close()
    assert len(set(frames)) == 1 and b"urn:example:once" in frames[0]
    assert encoded == 1


async def test_a_reader_that_stops_reading_is_disconnected(make_td: Any) -> None:
    # Only the write timeout can end it here: its queue is far larger than what is sent.
    async with running_app(event_write_timeout=0.5, event_queue=100_000) as (url, app):
        directory: Directory = app[DIRECTORY]
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /events?diff=true HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")  # subscribed; from now on it reads nothing
        big = "x" * 50_000
        async with DirectoryClient(url) as client:
            for i in range(400):  # 20 MB of events: more than the sockets buffer
                await client.register(make_td(id=f"urn:example:{i}", description=big))
                if not directory.events.subscribers:
                    break
        for _ in range(200):
            if not directory.events.subscribers:
                break
            await asyncio.sleep(0.05)
        assert directory.events.subscribers == 0
        writer.close()


# -- connections -----------------------------------------------------------------------------------
async def test_the_served_directory_limits_idle_and_surplus_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WOT_AGENTS_DIRECTORY_READ_TIMEOUT", "1")
    monkeypatch.setenv("WOT_AGENTS_DIRECTORY_MAX_CONNECTIONS", "4")
    async with cli_directory(tmp_path / "d.db") as (url, _):
        host, port = url.removeprefix("http://").split(":")
        idle = [await asyncio.open_connection(host, int(port)) for _ in range(4)]
        surplus_reader, surplus_writer = await asyncio.open_connection(host, int(port))
        # One connection too many is closed at once; idle ones when the read timeout is up.
        assert await asyncio.wait_for(surplus_reader.read(), 10) == b""
        for reader, writer in idle:
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
        surplus_writer.close()
        async with DirectoryClient(url) as client:  # and the directory still answers
            assert await client.count() == 0


# -- validation beyond the schema ------------------------------------------------------------------
async def test_writes_breaking_td_rules_the_schema_cannot_express_are_400(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    td = make_td(id="urn:example:rules", security=["nosec_sc", "missing_sc"])
    async with http.put(f"{directory}/things/urn:example:rules", json=td) as r:
        assert r.status == 400
        errors = (await r.json(content_type=None))["validationErrors"]
    assert {
        "field": "security.1",
        "description": "'missing_sc' is not defined in securityDefinitions",
    } in errors
    text = json.dumps(make_td(id="urn:example:rules")).replace('"title": ', '"title": "A", "title": ', 1)
    async with http.put(
        f"{directory}/things/urn:example:rules", data=text, headers={"Content-Type": "application/td+json"}
    ) as r:
        assert r.status == 400
        assert [e["field"] for e in (await r.json(content_type=None))["validationErrors"]] == ["title"]


# -- the OpenAPI document says what the server enforces ----------------------------------------------
async def test_openapi_says_what_the_server_enforces(
    directory: str, http: aiohttp.ClientSession, make_td: Any
) -> None:
    import re
    from urllib.parse import quote

    async with http.get(f"{directory}/openapi.json") as r:
        api = await r.json()
    paths, schemas = api["paths"], api["components"]["schemas"]
    for path, method in [("/things", "post"), ("/things/{id}", "put"), ("/things/{id}", "patch"),
                         ("/search/filter", "post"), ("/search/sparql", "post")]:  # fmt: skip
        assert paths[path][method]["requestBody"]["required"] is True, (path, method)
    # The id pattern is the server's rule: the same ids are refused.
    (id_param,) = paths["/things/{id}"]["parameters"]
    pattern = re.compile(id_param["schema"]["pattern"])
    for thing_id in [
        "urn:x:1",
        "http://example.com/a?b=c#d",
        "not-an-iri",
        "urn:with space",
        "1urn:x",
        "urn:x:<",
    ]:
        async with http.put(
            f"{directory}/things/{quote(thing_id, safe=':/')}", json=make_td(id=thing_id)
        ) as r:
            assert (r.status in (201, 204)) == bool(pattern.match(thing_id)), (thing_id, r.status)
    # Every member the TD schema requires is one the server requires.
    required = schemas["ThingDescription"]["required"]
    assert {"@context", "title", "security", "securityDefinitions"} <= set(required)
    for member in required:
        async with http.put(f"{directory}/things/urn:x:2", json=make_td(id="urn:x:2", **{member: None})) as r:
            assert r.status == 400, member
    # Non-empty queries; a bad diff is a 400 the document lists.
    (query,) = [p for p in paths["/search/jsonpath"]["get"]["parameters"] if p["name"] == "query"]
    assert query["schema"]["minLength"] == 1
    async with http.get(f"{directory}/search/jsonpath", params={"query": ""}) as r:
        assert r.status == 400
    assert "400" in paths["/events"]["get"]["responses"]
    async with http.get(f"{directory}/events", params={"diff": "maybe"}) as r:
        assert r.status == 400
