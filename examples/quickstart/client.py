"""Consume the agent from its TD's URL: call its action, then chat with it, streamed."""

import asyncio
import sys

from wot_agents import consume


async def main(url: str) -> None:
    async with consume(url) as weather:  # fetches and validates the TD
        print(await weather.invoke_action("forecast", {"city": "Berlin", "days": 2}))
        async for part in weather.chat_stream([{"role": "user", "content": "rain tomorrow?"}]):
            print(part, end="", flush=True)
        print()


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/weather"))
