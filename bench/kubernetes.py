"""The kubernetes backend on the real API server: visibility across replicas, write rate, re-list.

Starts the test API server (etcd + apiextensions-apiserver, built by scripts/k8s-apiserver.sh) and
two directory replicas (each a ``Directory`` over its own ``KubernetesStore``, client and watch), then:

- visibility: a write through replica A until replica B has published it (its indexes and SSE
  streams get it at that moment; GET answers from the same memory): p50 / p99 over ``--visible``
  sequential writes;
- registrations/s through the API server: ``--writes`` descriptions by 16 concurrent writers on A;
- re-list: ``--relist`` descriptions in the namespace, then a fresh replica opens (paged list,
  parse, index): the time it takes and the memory it adds (RSS).

    nice -n 10 .venv/bin/python bench/kubernetes.py [--visible 200] [--writes 2000] [--relist 10000]

Targets on a 2-core machine (issue 20): p50 visibility <= 100 ms, re-list of 10k <= 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1]))

from bench.sigterm import unwind_on_sigterm
from registry import THING_DESCRIPTIONS, Change, Directory, DirectorySettings, KubernetesStore
from registry._kubernetes import object_name
from tests.kubernetes._apiserver import start_test_apiserver
from wot_agents import KubeClient

EXAMPLE = json.loads((Path(__file__).parents[1] / "examples" / "weather-agent.json").read_text())


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def td(thing_id: str) -> dict[str, Any]:
    document = copy.deepcopy(EXAMPLE)
    document["id"] = thing_id
    return document


async def visibility(a: Directory, b: Directory, count: int) -> list[float]:
    waiting: dict[str, asyncio.Future[float]] = {}

    def seen(change: Change) -> None:
        future = waiting.pop(change.id, None)
        if future is not None and not future.done():
            future.set_result(time.perf_counter())

    b.store.subscribe(seen)
    latencies = []
    for n in range(count):
        thing_id = f"urn:bench:visible:{n}"
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        waiting[thing_id] = future
        started = time.perf_counter()
        await a.put(thing_id, td(thing_id))
        latencies.append((await asyncio.wait_for(future, 30) - started) * 1000)
    return latencies


async def write_rate(a: Directory, count: int, workers: int = 16) -> float:
    queue = iter(range(count))

    async def worker() -> None:
        for n in queue:
            thing_id = f"urn:bench:rate:{n}"
            await a.put(thing_id, td(thing_id))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return count / (time.perf_counter() - started)


async def fill(client: KubeClient, namespace: str, count: int, workers: int = 32) -> None:
    """Objects written straight to the API server (faster than through a directory)."""
    store = KubernetesStore(namespace=namespace, client=client)
    from registry._enrich import enrich
    from registry._json import dumps

    queue = iter(range(count))

    async def worker() -> None:
        for n in queue:
            thing_id = f"urn:bench:relist:{n}"
            enriched, expires = enrich(td(thing_id), now=time.time(), created=None, max_ttl=None)
            from registry import Record

            obj = store._object(Record(thing_id, dumps(enriched), expires))
            assert obj["metadata"]["name"] == object_name(thing_id)
            await client.create(THING_DESCRIPTIONS, namespace, obj)

    await asyncio.gather(*(worker() for _ in range(workers)))


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-kube-") as folder:
        server = await asyncio.to_thread(start_test_apiserver, Path(folder))
        try:
            config = server.kubeconfig
            async with (
                await KubeClient.connect(kubeconfig=config) as ca,
                await KubeClient.connect(kubeconfig=config) as cb,
                Directory(DirectorySettings(), store=KubernetesStore(namespace="bench", client=ca)) as a,
                Directory(DirectorySettings(), store=KubernetesStore(namespace="bench", client=cb)) as b,
            ):
                latencies = await visibility(a, b, args.visible)
                q = statistics.quantiles(latencies, n=100, method="inclusive")
                print(
                    f"visibility A->B ({args.visible} writes): p50 {statistics.median(latencies):.1f} ms, "
                    f"p99 {q[98]:.1f} ms, max {max(latencies):.1f} ms"
                )
                rate = await write_rate(a, args.writes)
                print(f"registrations through the API server: {rate:.0f}/s ({args.writes} by 16 writers)")
            async with await KubeClient.connect(kubeconfig=config) as client:
                started = time.perf_counter()
                await fill(client, "relist", args.relist)
                print(f"filled {args.relist} objects in {time.perf_counter() - started:.1f} s")
                before = rss_mb()
                started = time.perf_counter()
                async with Directory(
                    DirectorySettings(), store=KubernetesStore(namespace="relist", client=client)
                ) as c:
                    opened = time.perf_counter() - started
                    assert len(c.store.ids()) == args.relist
                    print(
                        f"re-list of {args.relist}: replica open in {opened:.2f} s, "
                        f"+{rss_mb() - before:.0f} MB RSS (process {rss_mb():.0f} MB)"
                    )
        finally:
            await asyncio.to_thread(server.stop)


if __name__ == "__main__":
    unwind_on_sigterm()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visible", type=int, default=200)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--relist", type=int, default=10_000)
    asyncio.run(main(parser.parse_args()))
