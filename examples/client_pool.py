"""Use many agents through one set of sessions and connections: python examples/client_pool.py URL..."""

import asyncio
import sys

from wot_agents import ClientPool, consume


async def main(urls: list[str]) -> None:
    async with ClientPool(max_connections=256) as pool:  # closing it closes every connection
        things = [consume(url, clients=pool) for url in urls]  # one HTTP session, one socket per WS endpoint
        for thing in things:
            print(await thing.invoke_action("forecast", {"city": "Berlin"}))


asyncio.run(main(sys.argv[1:]))
