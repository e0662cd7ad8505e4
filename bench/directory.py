"""Directory benchmark: registration, GET, filter / JSONPath / SPARQL latency, listing, RSS, restart.

Runs the real ``wot-agents directory`` process (SQLite file store) on loopback and drives it with
aiohttp clients. Usage: ``python bench/directory.py [--no-sparql] [N ...]`` (default 1000 10000).
``--no-sparql`` neither waits for the SPARQL index nor queries it (after a 100k load its catch-up,
at nice +19 on a busy shared machine, takes many minutes): the other figures are then taken while
it may still be indexing.

Above 10k descriptions, all but the last 10k are loaded into the store file before the server
starts (:func:`preload`: the registry's own ``SQLiteStore`` writes them, enriched as a
registration would be, with their events and SPARQL backlog marks; only validation and HTTP are
skipped), and the last 10k are registered over HTTP as usual: 100k registrations over HTTP take
minutes on this shared machine without telling more than 10k do. The server then opens the full
store, and its SPARQL index catches up with every description (what "while indexing" measures).

Order: N registrations by 16 clients; while the SPARQL index catches up, GET and JSONPath
latencies (what the index's work costs other requests) and the catch-up lag; 500 registrations
by one sequential client (deleted again, so every later figure is at N); GET throughput; query
latencies at rest; the full listing; RSS (server and its index process); restart. The request
bodies are serialized before the clock starts: the client's JSON encoding is not the server's
cost, and it shares the machine's two cores. The load average is printed with each size.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from sigterm import unwind_on_sigterm

CONCURRENCY = 16
#: Registrations over HTTP per run; the descriptions before them are preloaded into the store.
OVER_HTTP = 10_000


def agent(i: int) -> dict[str, Any]:
    """A realistic Agent Description: three actions with forms, two capabilities with examples."""
    base = f"https://agents.example.com/a{i}"
    actions = {
        name: {
            "description": f"{name} for agent {i}",
            "input": {"type": "object", "properties": {"question": {"type": "string"}},
                      "required": ["question"]},
            "output": {"type": "string"},
            "forms": [
                {"op": "invokeaction", "href": f"{base}/{name}", "contentType": "application/json",
                 "htv:methodName": "POST"},
                {"op": "invokeaction", "href": f"mqtt://broker.example.com/a{i}/{name}",
                 "contentType": "application/json"},
            ],
        }
        for name in ("chat", "summarize", "classify")
    }  # fmt: skip
    return {
        "@context": ["https://www.w3.org/2022/wot/td/v1.1",
                     {"lmos": "https://eclipse.dev/lmos/protocol/v1", "htv": "http://www.w3.org/2011/http#"}],
        "@type": "lmos:Agent",
        "id": f"urn:bench:agent:{i:07}",
        "title": f"Agent {i}",
        "description": f"Benchmark agent number {i}, answering questions about topic {i % 97}.",
        "lmos:capabilities": [
            {"id": f"urn:bench:cap:{i}:{k}", "name": f"capability {k} of {i}", "version": "1.0",
             "description": f"Handles topic {i % 97} task {k}.",
             "examples": [f"question {j} about topic {i % 97}" for j in range(3)]}
            for k in range(2)
        ],
        "lmos:supportedTenants": [f"tenant-{i % 50}"],
        "lmos:supportedChannels": ["web", "app"],
        "lmos:subset": "stable",
        "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
        "security": "nosec_sc",
        "actions": actions,
    }  # fmt: skip


async def preload(db: Path, bodies: list[dict[str, Any]]) -> None:
    """Write ``bodies`` into the store file ``db`` through the registry's SQLite store, enriched as
    the directory does on registration (validation and HTTP aside), 1000 per group commit."""
    from registry._backend import Record
    from registry._enrich import enrich
    from registry._json import dumps
    from registry._store import SQLiteStore

    async with SQLiteStore(db) as store:
        for start in range(0, len(bodies), 1000):
            writes = []
            for body in bodies[start : start + 1000]:
                enriched, expires = enrich(body, now=time.time(), created=None, max_ttl=None)
                record = Record(body["id"], dumps(enriched), expires)
                writes.append(store.put(record, enriched, created=True))
            await asyncio.gather(*writes)


@contextlib.asynccontextmanager
async def directory(db: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process, str, float]]:
    """The directory process on ``db``: (process, URL, seconds from start to listening), stopped
    on the way out whether the bench got there or not."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wot_agents.cli", "directory", "--port", "0", "--db", str(db),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = (await process.stdout.readline()).decode()
        match = re.search(r"(http://\S+?)/? ", line)
        assert match, line
        yield process, match.group(1), time.perf_counter() - started
    finally:
        await stop(process)


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM, as an operator would stop the directory, and wait for it to exit."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    await process.wait()


def say(line: str) -> None:
    print(line, flush=True)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def descendants(pid: int) -> list[int]:
    """The server's helper processes (the SPARQL index worker, its forkserver)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
    found: list[int] = []
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found += frontier
    return found


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


async def latencies(http: aiohttp.ClientSession, urls: list[str]) -> tuple[float, float]:
    times = []
    for url in urls:
        t = time.perf_counter()
        async with http.get(url) as r:
            await r.read()
            assert r.status == 200, (url, r.status, await r.text())
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


async def sparql_ready(http: aiohttp.ClientSession, url: str) -> None:
    """Until the SPARQL index has every acknowledged write (it answers 503 while it catches up)."""
    while True:
        async with http.get(f"{url}/search/sparql", params={"query": "ASK {}"}) as r:
            await r.read()
            if r.status == 200:
                return
            assert r.status == 503, r.status


async def run(n: int, sparql: bool = True) -> None:
    async with contextlib.AsyncExitStack() as stack:
        db = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "bench.db"
        bodies = [agent(i) for i in range(n)]
        preloaded = max(0, n - OVER_HTTP)
        if preloaded:
            t = time.perf_counter()
            await preload(db, bodies[:preloaded])
            took = time.perf_counter() - t
            say(f"\npreloaded {preloaded} descriptions into the store file in {took:.1f} s")
        process, url, opened = await stack.enter_async_context(directory(db))
        print(f"\n== {n} descriptions ({load()}) ==", flush=True)
        if preloaded:
            say(f"server start over the preloaded store (to listening):    {opened:6.2f} s")
        payloads = [json.dumps(body).encode() for body in bodies]
        td_json = {"Content-Type": "application/td+json"}
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as http:
            queue = list(range(preloaded, n))

            async def register() -> None:
                while queue:
                    i = queue.pop()
                    async with http.put(
                        f"{url}/things/{bodies[i]['id']}", data=payloads[i], headers=td_json
                    ) as r:
                        assert r.status == 201, await r.text()

            helpers = descendants(process.pid)
            # A new index process over a preloaded store: all its CPU is the catch-up.
            server_cpu, index_cpu = cpu_s([process.pid]), 0.0 if preloaded else cpu_s(helpers)
            t = time.perf_counter()
            await asyncio.gather(*(register() for _ in range(CONCURRENCY)))
            registered = time.perf_counter()
            reg = (n - preloaded) / (registered - t)
            server_cpu = cpu_s([process.pid]) - server_cpu
            say(f"registration, {CONCURRENCY} clients (validated, durable, JSON-indexed): {reg:8.0f} /s")
            say(f"  server CPU per registration: {1000 * server_cpu / (n - preloaded):.2f} ms")

            # While the SPARQL index converts the bulk load (in its own process): what other
            # requests see, and how long until a SPARQL query has every acknowledged write.
            picks = [(i * 7919) % n for i in range(200)]
            busy_get = await latencies(http, [f"{url}/things/{bodies[i]['id']}" for i in picks])
            busy_jp = await latencies(
                http, [f"{url}/search/jsonpath?query=$[?@.title=='Agent {i}'].id" for i in picks]
            )
            measured = time.perf_counter() - registered
            if sparql:
                await sparql_ready(http, url)
            rdf_lag = time.perf_counter() - registered
            index_cpu = cpu_s(helpers) - index_cpu
            during = f"the first {min(measured, rdf_lag):.1f} s of the index's {rdf_lag:.1f} s catch-up"
            say(f"GET /things/{{id}} while indexing     p50 {busy_get[0]:6.2f} ms  p99 {busy_get[1]:6.2f} ms")
            if sparql:
                say(f"  (both measured during {during})")
            say(f"JSONPath selective while indexing    p50 {busy_jp[0]:6.2f} ms  p99 {busy_jp[1]:6.2f} ms")
            if sparql:
                say(f"SPARQL index lag after the bulk registration (first complete answer): {rdf_lag:6.2f} s")
                say(f"  index process CPU per description: {1000 * index_cpu / n:.2f} ms")

            # one sequential client, as the published figures of other directories
            extra = [agent(n + i) for i in range(min(n, 500))]
            extra_payloads = [json.dumps(body).encode() for body in extra]
            t = time.perf_counter()
            for body, payload in zip(extra, extra_payloads, strict=True):
                async with http.put(f"{url}/things/{body['id']}", data=payload, headers=td_json) as r:
                    assert r.status == 201
            reg_seq = len(extra) / (time.perf_counter() - t)
            say(f"registration, 1 sequential client:                       {reg_seq:8.0f} /s")
            for body in extra:
                async with http.delete(f"{url}/things/{body['id']}") as r:
                    assert r.status == 204

            ids = [bodies[(i * 7919) % n]["id"] for i in range(2000)]
            pending = list(ids)

            async def get() -> None:
                while pending:
                    async with http.get(f"{url}/things/{pending.pop()}") as r:
                        await r.read()

            t = time.perf_counter()
            await asyncio.gather(*(get() for _ in range(CONCURRENCY)))
            gets = len(ids) / (time.perf_counter() - t)
            say(f"GET /things/{{id}}, {CONCURRENCY} clients:                         {gets:8.0f} /s")

            if sparql:
                await sparql_ready(http, url)  # the deletions are indexed: a directory at rest
            filt = await latencies(
                http, [f"{url}/search/filter?capability=urn:bench:cap:{i}:1" for i in picks]
            )
            say(f"JSON filter selective (capability id)   p50 {filt[0]:6.2f} ms  p99 {filt[1]:6.2f} ms")
            jp = await latencies(
                http, [f"{url}/search/jsonpath?query=$[?@.title=='Agent {i}'].id" for i in picks]
            )
            say(f"JSONPath selective ($[?@.title==...])  p50 {jp[0]:6.2f} ms  p99 {jp[1]:6.2f} ms")
            # Selective queries on other fields (issue 15: p50 <= 5 ms at 10k, <= 30 ms at 100k).
            quote, base = urllib.parse.quote, "https://agents.example.com/a"
            others = {
                "JSON filter selective (title words)     ": [
                    f"{url}/search/filter?title=" + quote(f"Agent {i}") for i in picks
                ],
                "JSON filter selective (q words)         ": [
                    f"{url}/search/filter?q=" + quote(f"capability 1 of {i}") for i in picks
                ],
                "JSONPath two conditions, one nested     ": [
                    f"{url}/search/jsonpath?query=" + quote(
                        f"$[?(@.actions.chat.output.type=='string' && @.title=='Agent {i}')].id", safe="")
                    for i in picks
                ],
                "JSONPath nested path only (form href)   ": [
                    f"{url}/search/jsonpath?query=" + quote(
                        f"$[?@.actions.chat.forms[0].href=='{base}{i}/chat'].id", safe="")
                    for i in picks
                ],
                "JSONPath in an array (capability id)    ": [
                    f"{url}/search/jsonpath?query=" + quote(
                        f"$[?@['lmos:capabilities'][1].id=='urn:bench:cap:{i}:1'].title", safe="")
                    for i in picks
                ],
                "JSONPath either of two titles (||)      ": [
                    f"{url}/search/jsonpath?query=" + quote(
                        f"$[?@.title=='Agent {i}' || @.title=='Agent {(i + 1) % n}'].id", safe="")
                    for i in picks
                ],
                "JSONPath either nested path (||)        ": [
                    f"{url}/search/jsonpath?query=" + quote(
                        f"$[?@.actions.chat.forms[0].href=='{base}{i}/chat' || "
                        f"@['lmos:capabilities'][0].id=='urn:bench:cap:{(i + 1) % n}:0'].id", safe="")
                    for i in picks
                ],
                "JSONPath match() literal title          ": [
                    f"{url}/search/jsonpath?query=" + quote(f"$[?match(@.title, 'Agent {i}')].id", safe="")
                    for i in picks
                ],
            }  # fmt: skip
            for label, urls in others.items():
                found = await latencies(http, urls)
                say(f"{label}p50 {found[0]:6.2f} ms  p99 {found[1]:6.2f} ms")
            if sparql:
                td = "https://www.w3.org/2019/wot/td#"
                found = await latencies(
                    http,
                    [f"{url}/search/sparql?query=" + urllib.parse.quote(
                        f'SELECT ?t WHERE {{ ?t <{td}title> "Agent {i}"@en }}', safe="") for i in picks],
                )  # fmt: skip
                say(f"SPARQL selective (td:title)            p50 {found[0]:6.2f} ms  p99 {found[1]:6.2f} ms")
            t = time.perf_counter()
            pages, next_url = [], f"{url}/things"
            while next_url:
                async with http.get(next_url) as r:
                    pages.append(await r.read())  # received; parsing is the client's business
                    link = re.search(r'<([^>]+)>; rel="next"', r.headers.get("Link", ""))
                next_url = f"{url}{link.group(1)}" if link else ""
            listing = time.perf_counter() - t
            say(f"full listing ({n} TDs, pages of 10k, bytes received):  {listing:6.3f} s")
            t = time.perf_counter()
            listed = sum(len(json.loads(page)) for page in pages)
            say(f"  ... and parsing them in the bench client:              {time.perf_counter() - t:6.3f} s")
            assert listed == n, (listed, n)
            del pages
            index_rss = sum(rss_mb(pid) for pid in descendants(process.pid))
            rss = rss_mb(process.pid)
            total = rss + index_rss
            say(f"RSS: server {rss:.0f} MB + SPARQL index process {index_rss:.0f} MB = {total:6.0f} MB")
        await stop(process)
        _, _, restart = await stack.enter_async_context(directory(db))
        say(f"restart (process start to listening, all loaded):        {restart:6.2f} s")
        say(f"({load()})")


async def main() -> None:
    sparql = "--no-sparql" not in sys.argv[1:]
    sizes = [int(a) for a in sys.argv[1:] if a != "--no-sparql"] or [1000, 10000]
    import os

    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    for n in sizes:
        await run(n, sparql)


if __name__ == "__main__":
    unwind_on_sigterm()
    asyncio.run(main())
