"""Register, find and follow descriptions in a directory: python examples/directory_client.py [URL]."""

import asyncio
import json
import sys
from typing import Any

from wot_agents import DirectoryClient, DirectoryError


async def follow(directory: DirectoryClient, connected: asyncio.Event) -> None:
    async for event in directory.events(diff=True, connected=connected):  # SSE; resumes after a drop
        print(event.type, event.data["id"])  # thing_created / thing_updated / thing_deleted
        if event.type == "thing_deleted":
            return


async def main(url: str, td: dict[str, Any]) -> None:
    async with DirectoryClient(url, token=None) as directory:
        connected = asyncio.Event()
        events = asyncio.create_task(follow(directory, connected))
        await connected.wait()  # every change from now on is notified
        thing_id = await directory.register(td, ttl=60)  # PUT /things/{id}; POST /things when td has no id
        await directory.patch(thing_id, {})  # an empty merge patch renews the ttl
        td = await directory.get(thing_id)  # the enriched TD, with td["registration"]
        td = await directory.get(thing_id, language="de")  # Accept-Language: German title if it has one
        present = await directory.exists(thing_id)  # HEAD; directory.count() gives the total
        own = await directory.describe()  # the directory's own TD (/.well-known/wot)
        async for td in directory.list(page_size=100):  # all TDs in id order, page by page
            print(td["title"], "expires", td["registration"]["expires"])
        agents = await directory.search(tenant="acme", channel=["web", "app"], sort=["title"])
        ids = await directory.jsonpath("$[?@.title=='WeatherAgent'].id")  # RFC 9535
        rows = await directory.sparql("SELECT ?s WHERE { ?s a lmos:Agent }")  # td:, lmos:... predeclared
        print(present, own["title"], len(agents), ids, len(rows["results"]["bindings"]))
        await directory.delete(thing_id)
        try:
            await directory.get(thing_id)
        except DirectoryError as error:  # status: the HTTP status; problem: the RFC 7807 document
            print(error.status, error.problem["title"])
        await events


weather = json.load(open("examples/weather-agent.json"))
asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8081", weather))
