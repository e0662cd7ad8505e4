"""A process that serves and announces N plain Things, for tests and bench/discovery.py.

Run inside a network namespace (``ip netns exec NS python agent_host.py ...``). It serves each TD
over HTTP on its own port, announces all of them through one mDNS responder, and then reads
commands on stdin, one a line:

- ``update``: change every TD (new description), which re-announces them;
- ``stop``: clean shutdown (goodbye packets), then exit.

It prints JSON lines on stdout: ``{"event": "announced", "names": [...], "t": <epoch>}`` once
all are announced, ``{"event": "updated", ...}`` and ``{"event": "stopped", ...}``. ``t`` is
wall-clock time, comparable across processes of one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from discovery import Announcer
from discovery._net import open_zeroconf
from wot_agents import serve_app


def description(title: str, index: int, revision: int) -> dict[str, Any]:
    return {
        "@context": "https://www.w3.org/2022/wot/td/v1.1",
        "id": f"urn:wot-agents:test:{title.replace(' ', '-')}:{index}",
        "title": f"{title} {index}" if index else title,
        "description": f"test thing, revision {revision}",
        "security": "nosec",
        "securityDefinitions": {"nosec": {"scheme": "nosec"}},
    }


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--title", default="Test Thing")
    parser.add_argument("--host", default="0.0.0.0", help="address the HTTP servers listen on")
    parser.add_argument("--interface", action="append", help="mDNS only on these addresses")
    parser.add_argument("--kind", choices=("Thing", "Directory"), default=None)
    args = parser.parse_args()

    revision = 0
    documents = [description(args.title, i, revision) for i in range(args.count)]
    servers = AsyncExitStack()
    ports: list[int] = []
    for i in range(args.count):
        app = web.Application()

        async def serve_td(request: web.Request, i: int = i) -> web.Response:
            return web.json_response(documents[i], content_type="application/td+json")

        app.router.add_get("/.well-known/wot", serve_td)
        url = await servers.enter_async_context(serve_app(app, args.host, 0))
        ports.append(urlsplit(url).port or 0)

    zc = open_zeroconf(args.interface)
    announcers = [
        Announcer(doc, port=port, zeroconf=zc, interfaces=args.interface, kind=args.kind)
        for doc, port in zip(documents, ports, strict=True)
    ]
    started = time.time()
    try:
        await asyncio.gather(*(announcer.start() for announcer in announcers))
        emit("announced", names=[a.name for a in announcers], started=started, ports=ports)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := (await reader.readline()).decode().strip():
            if line == "update":
                revision += 1
                for i, announcer in enumerate(announcers):
                    documents[i] = description(args.title, i, revision)
                    await announcer.update(documents[i])
                emit("updated", revision=revision)
            elif line == "stop":
                break
    finally:
        emit("stopping")
        await asyncio.gather(*(announcer.aclose() for announcer in announcers))
        await zc.async_close()
        await servers.aclose()
        emit("stopped")


if __name__ == "__main__":
    asyncio.run(main())
