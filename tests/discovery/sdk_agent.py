"""An agent built with the SDK and served with ``announce=True``, for the network-namespace tests.

``python sdk_agent.py TITLE [--directory URL|dns-sd]``: serves over HTTP on every interface, prints
``{"event": "serving", "td_url": ..., "id": ...}`` and runs until interrupted (Ctrl-C: clean
shutdown, goodbye packets).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from wot_agents import Agent


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("title")
    parser.add_argument("--directory", help="a directory URL, or 'dns-sd' to find one")
    args = parser.parse_args()
    agent = Agent(args.title, description="answers with the weather")

    @agent.action(safe=True)
    async def forecast(city: str) -> str:
        """Tells tomorrow's weather for a city."""
        return f"sunny in {city}"

    directory = True if args.directory == "dns-sd" else args.directory
    async with agent.serve(http="0.0.0.0:0", announce=True, directory=directory) as running:
        print(json.dumps({"event": "serving", "td_url": running.td_url, "id": agent.id}), flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
