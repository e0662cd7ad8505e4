"""Action invocations per second and latency (p50/p99) for each binding, against a bare aiohttp handler.

One trivial action (``add(a, b) -> a + b``) served by a wot-agents agent over HTTP, the LMOS
WebSocket binding and MQTT (a mosquitto started here on a free loopback port), and the same
computation as a bare aiohttp handler. The servers run in a child process so the clients do not
share their event loop. Each case runs with 1 client and with 50 concurrent clients.

Clients: the wot-agents consumer (``consume(td)``: form choice, input and output validation,
the binding's client) for every binding, and a raw aiohttp client for the two HTTP servers, so
the HTTP binding's server-side overhead shows apart from the consumer's.

    .venv/bin/python bench/bindings.py [--requests N]

Target: the HTTP binding within 1.5x of the bare aiohttp handler's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from sigterm import unwind_on_sigterm

from wot_agents import Agent, ConsumedThing, consume, serve_app
from wot_agents.bindings.mqtt import LocalBroker

CONCURRENCY = (1, 50)


# --- the server process ------------------------------------------------------------------------


async def serve_forever(broker: str) -> None:
    agent = Agent("Bench", id="urn:bench:agent")

    @agent.action()
    async def add(a: int, b: int) -> int:
        return a + b

    async def bare(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(body["a"] + body["b"])

    app = web.Application()
    app.router.add_post("/add", bare)
    async with serve_app(app) as bare, agent.serve(http=True, ws=True, mqtt=broker) as running:
        print(
            json.dumps({"td": running.description.to_dict(), "bare": f"{bare}/add"}),
            flush=True,
        )
        await asyncio.Event().wait()


# --- the client side -----------------------------------------------------------------------------


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure(
    call: Callable[[int], Awaitable[object]], requests: int, clients: int
) -> tuple[float, float, float]:
    """(invocations/s, p50 ms, p99 ms) of ``requests`` calls spread over ``clients`` concurrent loops."""
    for i in range(min(200, requests)):  # warm up connections and caches
        await call(i)
    latencies: list[float] = []
    per_client = requests // clients

    async def client(offset: int) -> None:
        for i in range(per_client):
            start = time.perf_counter()
            result = await call(offset + i)
            latencies.append(time.perf_counter() - start)
            assert result == 2 * (offset + i) + 1, result

    started = time.perf_counter()
    await asyncio.gather(*(client(n * per_client) for n in range(clients)))
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000


async def run(requests: int, rounds: int, broker: str) -> None:
    server = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", broker, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        info = json.loads(await server.stdout.readline())
        td, bare_url = info["td"], info["bare"]
        http_href = next(f["href"] for f in td["actions"]["add"]["forms"] if f["href"].startswith("http"))
        rows: list[tuple[str, int, float, float, float]] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

            def raw(url: str) -> Callable[[int], Awaitable[object]]:
                async def call(i: int) -> object:
                    async with session.post(url, json={"a": i, "b": i + 1}) as response:
                        return await response.json()

                return call

            cases: list[tuple[str, Callable[[int], Awaitable[object]]]] = [
                ("bare aiohttp handler, raw client", raw(bare_url)),
                ("HTTP binding, raw client", raw(http_href)),
            ]
            things = [consume(td, prefer=[binding]) for binding in ("http", "ws", "mqtt")]
            for thing, label in zip(things, ("HTTP", "WebSocket", "MQTT"), strict=True):

                async def call(i: int, thing: ConsumedThing = thing) -> object:
                    return await thing.invoke_action("add", {"a": i, "b": i + 1})

                cases.append((f"{label} binding, consume()", call))
            try:
                for clients in CONCURRENCY:
                    # Rounds interleave the cases, and the median round is kept: this machine is shared.
                    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in cases}
                    for _ in range(rounds):
                        for name, case in cases:
                            samples[name].append(await measure(case, requests, clients))
                    for name, _ in cases:
                        rate, p50, p99 = (
                            statistics.median(column) for column in zip(*samples[name], strict=True)
                        )
                        rows.append((name, clients, rate, p50, p99))
            finally:
                for thing in things:
                    await thing.aclose()
    finally:
        server.terminate()
        await server.wait()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{requests} invocations per row, median of {rounds} rounds (clients and servers in two processes)"
    )
    print(f"{'case':38} {'clients':>7} {'inv/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for name, clients, rate, p50, p99 in rows:
        print(f"{name:38} {clients:>7} {rate:>9.0f} {p50:>8.2f} {p99:>8.2f}")
    by = {(name, clients): p50 for name, clients, _, p50, _ in rows}
    for clients in CONCURRENCY:
        bare = by[("bare aiohttp handler, raw client", clients)]
        server_side = by[("HTTP binding, raw client", clients)] / bare
        end_to_end = by[("HTTP binding, consume()", clients)] / bare
        print(
            f"{clients} client(s): HTTP binding p50 / bare aiohttp p50 = {server_side:.2f}x (raw client), "
            f"{end_to_end:.2f}x (consume()); target <= 1.5x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="invocations per row (default 2000)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds per case; the median is printed (default 3)"
    )
    parser.add_argument("--serve", metavar="BROKER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_forever(args.serve))
        return
    with LocalBroker() as broker:
        asyncio.run(run(args.requests, args.rounds, broker.url))


if __name__ == "__main__":
    unwind_on_sigterm()
    main()
