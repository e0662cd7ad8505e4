"""A chat agent, served and talked to: the same way over HTTP, WebSocket and MQTT."""

import asyncio

from weather import agent  # examples/weather.py

from wot_agents import ChatRequest, ChatStream, chat_handler, consume


@chat_handler(agent)
async def reply(request: ChatRequest, stream: ChatStream) -> str:
    await stream.send("It will ")  # optional: parts on the event chatStream
    await stream.send("rain.")
    return "It will rain."


async def main() -> None:
    async with agent.serve(http=True, ws=True) as running, consume(running.description) as thing:
        answer = await thing.chat([{"role": "user", "content": "rain tomorrow?"}])
        print(answer.text)
        async for part in thing.chat_stream([{"role": "user", "content": "rain?"}]):
            print(part, end="")
        print()


asyncio.run(main())
