"""Turns per second and latency (p50/p99) through the runtime, against calling the agent directly.

Three echo agents, one per binding (HTTP, the LMOS WebSocket binding, MQTT through a mosquitto
started here), each with its own topic (weather, billing, travel) so that vector routing can
reach each binding on purpose, run in one child process; ``wot-agents runtime`` runs in another,
with 100 and then 1,000 agents (the three echo agents and synthetic ones on other topics, from an
agent file) and an SQLite conversation store. Per binding, this process measures:

- ``direct``: ``consume(td).chat(...)`` of the echo agent, no runtime (the baseline);
- ``explicit``: ``POST .../chat/{conversation}/message`` naming the agent (``explicitAgent``);
- ``vector``: the same, routed by the MiniLM vector router (micro-batched embeddings);

with 1 and 64 concurrent clients (each client its own conversation), which this process runs
on bare keep-alive HTTP/1.1 connections (``--client aiohttp``: aiohttp's client, ~3x the CPU a
turn, taken from the same two cores). Last, it stores 10,000 conversations through the runtime
and reads the runtime's resident memory.

    .venv/bin/python bench/runtime.py [--turns N] [--agents 100,1000] [--client lean|aiohttp]

Targets (2-core machine): runtime overhead p50 <= 3 ms over the direct call with explicit
routing; >= 500 turns/s vector-routed with 100 agents and 64 clients; <= 300 MB with 10,000
stored conversations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from sigterm import unwind_on_sigterm

from wot_agents import Agent, Capability, ChatRequest, ChatStream, ConsumedThing, chat_handler, consume
from wot_agents.bindings.mqtt import LocalBroker

BINDINGS = ("http", "ws", "mqtt")
TOPICS = {
    "http": (
        "weather",
        ["will it rain in Paris on Sunday?", "weather forecast for the weekend", "is it sunny"],
    ),
    "ws": ("billing", ["my last invoice shows a wrong amount", "I was charged twice", "how much do I owe"]),
    "mqtt": ("travel", ["find me a flight to Lisbon next week", "I need a hotel in Berlin", "book a train"]),
}
QUERIES = {
    "http": "will it rain in Paris on Sunday?",
    "ws": "my last invoice shows a wrong amount",
    "mqtt": "find me a flight to Lisbon next week",
}
SUBJECTS = (
    "gardening", "chess", "knitting", "astronomy", "pottery", "beekeeping", "origami", "calligraphy",
    "sailing", "fencing", "archery", "birdwatching", "woodworking", "photography", "baking", "cycling",
    "genealogy", "poetry", "juggling", "skiing",
)  # fmt: skip
ASPECTS = (
    "basics",
    "tools",
    "history",
    "clubs",
    "competitions",
    "safety",
    "books",
    "courses",
    "prices",
    "tips",
)


# --- the agents' process ---------------------------------------------------------------------------


def echo_agent(binding: str) -> Agent:
    topic, examples = TOPICS[binding]
    agent = Agent(
        f"Echo{binding.upper()}",
        id=f"urn:bench:echo:{binding}",
        description=f"Answers {topic} questions.",
        capabilities=[Capability(id=f"urn:bench:capability:{topic}", name=topic, examples=examples)],
        tenants=["acme"],
        channels=["web"],
    )

    async def reply(request: ChatRequest, stream: ChatStream) -> str:
        return request.messages[-1].content

    chat_handler(agent)(reply)
    return agent


async def serve_agents(broker: str) -> None:
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        tds = {}
        for binding in BINDINGS:
            options: dict[str, Any] = {"mqtt": broker} if binding == "mqtt" else {binding: True}
            running = await stack.enter_async_context(echo_agent(binding).serve(**options))
            tds[binding] = running.description.to_dict()
        print(json.dumps(tds), flush=True)
        await asyncio.Event().wait()


# --- the runtime's process -------------------------------------------------------------------------


def synthetic(n: int) -> dict[str, Any]:
    subject, aspect = SUBJECTS[n % len(SUBJECTS)], ASPECTS[(n // len(SUBJECTS)) % len(ASPECTS)]
    return {
        "@context": ["https://www.w3.org/2022/wot/td/v1.1", {"lmos": "https://eclipse.dev/lmos/protocol/v1"}],
        "@type": "lmos:Agent",
        "id": f"urn:bench:synthetic:{n}",
        "title": f"{subject} {aspect} agent {n}",
        "lmos:capabilities": [
            {
                "id": f"urn:bench:capability:{subject}:{aspect}:{n}",
                "name": f"{subject} {aspect}",
                "examples": [f"tell me about {subject} {aspect}", f"{subject} {aspect} for beginners"],
            }
        ],
        "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
        "security": "nosec_sc",
        "actions": {
            "chat": {"input": {"type": "object"}, "forms": [{"href": f"http://127.0.0.1:9/{n}/actions/chat"}]}
        },
    }


async def start_runtime(agents: Path, store: Path) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wot_agents.cli", "runtime", "--agents", str(agents),
        "--router", "vector", "--port", "0", "--store", str(store),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        cwd=store.parent,  # not bench/, whose runtime.py would shadow the runtime package
    )  # fmt: skip
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 120)).decode()
    match = re.search(r"listening on (http://\S+?)/apis/v1/", line)
    if not match:
        process.kill()
        raise RuntimeError(f"the runtime did not start: {line!r}")
    return process, match.group(1)


async def wait_ready(http: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    while True:
        async with http.get(f"{url}/health/readiness") as answer:
            if answer.status == 200:
                return time.perf_counter() - started
        await asyncio.sleep(0.2)


async def batches(http: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    """The runtime's routing batches and the turns they routed so far (from its /metrics)."""
    async with http.get(f"{url}/metrics") as answer:
        text = await answer.text()
    values = dict(line.split() for line in text.splitlines() if line.startswith("runtime_routing_batch"))
    return float(values.get("runtime_routing_batches", 0)), float(
        values.get("runtime_routing_batched_turns", 0)
    )


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of the process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- measuring -------------------------------------------------------------------------------------


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


Call = Callable[[int, int], Awaitable[str]]


Row = tuple[float, float, float, tuple[float, ...]]


async def measure(
    call: Call,
    turns: int,
    clients: int,
    pids: tuple[int, ...],
    warmed: Callable[[], Awaitable[object]] | None = None,
) -> Row:
    """(turns/s, p50 ms, p99 ms, CPU ms a turn of each process of ``pids``) of ``turns`` turns
    spread over ``clients`` concurrent clients. The CPU a turn costs each process depends far less
    on what else the machine runs than turns/s does: 2,000 / their sum is about what two idle
    cores would serve."""
    for i in range(min(50, turns)):
        await call(10_000 + i, i)
    if warmed is not None:  # e.g. read counters that the timed turns alone should move
        await warmed()
    latencies: list[float] = []
    per_client = max(1, turns // clients)
    cpu_before = [cpu_seconds(pid) for pid in pids]

    async def client(number: int) -> None:
        for i in range(per_client):
            start = time.perf_counter()
            await call(number, i)
            latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - started
    cpu = tuple(
        (cpu_seconds(pid) - before) * 1000 / len(latencies)
        for pid, before in zip(pids, cpu_before, strict=True)
    )
    return (
        len(latencies) / elapsed,
        percentile(latencies, 0.5) * 1000,
        percentile(latencies, 0.99) * 1000,
        cpu,
    )


class _Exchange(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends a request and reads its reply, nothing more.

    The runtime's rows load it from this process, which shares the two cores with the runtime,
    the agents and mosquitto: this costs ~0.07 ms of CPU a turn against aiohttp's client's
    ~0.2 ms (64 clients; 1 client: 0.10 against 0.27 ms), the way a server is loaded with wrk
    rather than a full client library. It reads replies with a ``Content-Length`` only (the
    runtime's JSON answers have one).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0 or self._waiter is None:
            return
        head = bytes(self._buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            waiter, self._waiter = self._waiter, None
            waiter.set_exception(RuntimeError(f"a reply without Content-Length: {head!r}"))
            return
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        if len(self._buffer) < end + 4 + length:
            return
        body = bytes(self._buffer[end + 4 : end + 4 + length])
        del self._buffer[: end + 4 + length]
        waiter, self._waiter = self._waiter, None
        waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"the runtime closed the connection: {exc}"))

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._waiter


class LeanClient:
    """Clients of the runtime for the timed rows: a pool of :class:`_Exchange` connections, one per
    turn in flight (as many as concurrent clients), each kept alive for the next turn."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._idle: list[_Exchange] = []
        self._all: list[_Exchange] = []

    async def post(self, path: str, turn: str, body: bytes) -> tuple[int, bytes]:
        if self._idle:
            connection = self._idle.pop()
        else:
            _, connection = await asyncio.get_running_loop().create_connection(
                _Exchange, self.host, self.port
            )
            self._all.append(connection)
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"x-turn-id: {turn}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        answer = await connection.exchange(request)
        self._idle.append(connection)  # only after a whole reply: a failed one is not reused
        return answer

    def close(self) -> None:
        for connection in self._all:
            if connection.transport is not None:
                connection.transport.close()
        self._idle.clear()
        self._all.clear()


def runtime_call(
    http: aiohttp.ClientSession | LeanClient, url: str, binding: str, explicit: bool, tag: str
) -> Call:
    query = QUERIES[binding]  # an example of the agent's: routed above any abstention gate
    context: dict[str, Any] = {"messages": [{"role": "user", "content": query}]}
    if explicit:
        context["explicitAgent"] = f"urn:bench:echo:{binding}"
    body = {
        "inputContext": context,
        "systemContext": {"channelId": "web"},
        "userContext": {"userId": "u"},
    }
    encoded = json.dumps(body).encode()

    async def call(client: int, i: int) -> str:
        path = f"/apis/v1/acme/chat/{tag}-{binding}-{client}/message"
        if isinstance(http, LeanClient):
            status, data = await http.post(path, f"t{i}", encoded)
            reply = json.loads(data)
        else:
            headers = {"x-turn-id": f"t{i}", "Content-Type": "application/json"}
            async with http.post(f"{url}{path}", data=encoded, headers=headers) as answer:
                status, reply = answer.status, await answer.json()
        if status != 200 or reply["agent"]["id"] != f"urn:bench:echo:{binding}":
            raise RuntimeError(f"turn went wrong: {status} {reply}")
        return str(reply["content"])

    return call


def direct_call(thing: ConsumedThing, binding: str) -> Call:
    async def call(client: int, i: int) -> str:
        reply = await thing.chat(
            [{"role": "user", "content": f"{QUERIES[binding]} ({i})"}], conversation_id="d"
        )
        return reply.text

    return call


async def run(
    turns: int,
    sizes: list[int],
    broker: LocalBroker,
    bindings: list[str],
    concurrency: list[int],
    lean: bool = True,
) -> None:
    load = os.getloadavg()[0]
    broker_pid = broker.pid
    assert broker_pid is not None
    agents_process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", broker.url, stdout=asyncio.subprocess.PIPE
    )
    rows: list[tuple[str, str, int, int, Row]] = []
    notes: list[str] = []
    try:
        assert agents_process.stdout is not None
        tds = json.loads(await agents_process.stdout.readline())
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector) as http:
            things = {binding: consume(tds[binding]) for binding in BINDINGS}
            try:
                for binding in bindings:
                    for clients in concurrency:
                        call = direct_call(things[binding], binding)
                        pids: tuple[int, ...] = (agents_process.pid, os.getpid(), broker_pid)
                        row = await measure(call, turns, clients, pids)
                        rows.append(("direct", binding, 0, clients, (*row[:3], (0.0, *row[3]))))
            finally:
                for thing in things.values():
                    await thing.aclose()
            with tempfile.TemporaryDirectory() as scratch:
                for size in sizes:
                    documents = [tds[b] for b in BINDINGS] + [
                        synthetic(n) for n in range(size - len(BINDINGS))
                    ]
                    agents_file = Path(scratch) / f"agents-{size}.json"
                    agents_file.write_text(json.dumps(documents))
                    runtime, url = await start_runtime(agents_file, Path(scratch) / f"store-{size}.db")
                    loader: aiohttp.ClientSession | LeanClient = LeanClient(url) if lean else http
                    try:
                        warm = await wait_ready(http, url)
                        notes.append(f"{size} agents: ready (indexed, classifier fitted) in {warm:.1f} s")
                        pids = (runtime.pid, agents_process.pid, os.getpid(), broker_pid)
                        for binding in bindings:
                            for method in ("explicit", "vector"):
                                for clients in concurrency:
                                    call = runtime_call(
                                        loader, url, binding, method == "explicit", f"{size}{method}"
                                    )
                                    counted: list[tuple[float, float]] = []

                                    async def count(
                                        counted: list[tuple[float, float]] = counted, url: str = url
                                    ) -> None:
                                        counted.append(await batches(http, url))

                                    row = await measure(call, turns, clients, pids, count)
                                    rows.append((method, binding, size, clients, row))
                                    if method == "vector" and clients > 1:
                                        (ran, routed), after = counted[0], await batches(http, url)
                                        mean = (after[1] - routed) / max(after[0] - ran, 1)
                                        notes.append(
                                            f"{binding} {size} agents, {clients} clients: vector turns"
                                            f" routed in batches of {mean:.1f} on average"
                                        )
                        if size == sizes[0]:
                            before = rss_mb(runtime.pid)
                            fill = runtime_call(loader, url, "http", True, "stored")
                            started = time.perf_counter()

                            async def filler(worker: int, fill: Call = fill) -> None:
                                for n in range(worker, 10_000, 64):  # one turn per conversation
                                    await fill(100_000 + n, 0)

                            await asyncio.gather(*(filler(worker) for worker in range(64)))
                            notes.append(
                                f"{size} agents: 10,000 more conversations stored in "
                                f"{time.perf_counter() - started:.1f} s; runtime RSS {before:.0f} MB before, "
                                f"{rss_mb(runtime.pid):.0f} MB after (target <= 300 MB)"
                            )
                    finally:
                        if isinstance(loader, LeanClient):
                            loader.close()
                        runtime.terminate()
                        await runtime.wait()
    finally:
        agents_process.terminate()
        await agents_process.wait()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{turns} turns per row; agents, runtime, clients and mosquitto in four processes; the runtime"
        f" loaded by {'bare HTTP/1.1 connections' if lean else 'aiohttp'} (--client); "
        f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"{'path':9} {'binding':7} {'agents':>6} {'clients':>7} {'turns/s':>8} {'p50 ms':>7} {'p99 ms':>8}"
        "   CPU ms a turn: runtime agents client mosquitto  (2,000 / sum)"
    )
    for path, binding, size, clients, (rate, p50, p99, cpu) in rows:
        print(
            f"{path:9} {binding:7} {size or '-':>6} {clients:>7} {rate:>8.0f} {p50:>7.2f} {p99:>8.2f}"
            f"   {cpu[0]:>21.2f} {cpu[1]:>6.2f} {cpu[2]:>6.2f} {cpu[3]:>9.2f}"
            f"  {2000 / max(sum(cpu), 1e-9):>13.0f}"
        )
    direct = {(b, c): row[1] for path, b, _, c, row in rows if path == "direct"}
    for path, binding, size, clients, (rate, p50, _, cpu) in rows:
        if path == "explicit" and clients == 1:
            overhead = p50 - direct[(binding, 1)]
            notes.append(
                f"{binding} {size} agents: explicit overhead p50 {overhead:+.2f} ms (target <= 3 ms)"
            )
        if path == "vector" and clients == 64 and size == 100:
            notes.append(
                f"{binding} 100 agents, 64 clients: vector-routed {rate:.0f} turns/s (target >= 500;"
                f" the runtime's CPU alone would serve {1000 / max(cpu[0], 1e-9):.0f} a core,"
                f" all four processes {2000 / max(sum(cpu), 1e-9):.0f} on two idle cores)"
            )
    for note in notes:
        print(note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000, help="turns per row (default 1000)")
    parser.add_argument("--agents", default="100,1000", help="agent counts (default 100,1000)")
    parser.add_argument("--bindings", default=",".join(BINDINGS), help="default http,ws,mqtt")
    parser.add_argument("--clients", default="1,64", help="concurrent clients (default 1,64)")
    parser.add_argument(
        "--client",
        choices=("lean", "aiohttp"),
        default="lean",
        help="how this process loads the runtime: a bare HTTP/1.1 exchange per connection (default,"
        " ~0.07 ms of CPU a turn, as wrk would) or aiohttp's client (~0.2 ms)",
    )
    parser.add_argument("--serve", metavar="BROKER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_agents(args.serve))
        return
    with LocalBroker() as broker:
        asyncio.run(
            run(
                args.turns,
                [int(n) for n in args.agents.split(",")],
                broker,
                args.bindings.split(","),
                [int(n) for n in args.clients.split(",")],
                args.client == "lean",
            )
        )


if __name__ == "__main__":
    unwind_on_sigterm()
    main()
