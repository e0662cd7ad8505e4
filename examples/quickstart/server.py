"""An agent with an action and a chat handler, served over HTTP and WebSocket (Ctrl-C stops it)."""

import asyncio
import os

from wot_agents import Agent, Capability, ChatRequest, ChatStream, chat_handler

agent = Agent(
    "Weather",
    id="urn:example:weather",
    description="Answers weather questions.",
    capabilities=[
        Capability(id="urn:weather:forecast", name="Forecast", examples=["will it rain tomorrow?"])
    ],
)


@agent.action(safe=True)
async def forecast(city: str, days: int = 1) -> str:
    """Tells the forecast for a city."""
    return f"Sunny in {city} for {days} day(s)."


@chat_handler(agent)
async def chat(request: ChatRequest, stream: ChatStream) -> str:
    await stream.send("Sunny ")  # parts reach streaming clients as they are sent
    await stream.send("tomorrow.")
    return "Sunny tomorrow."


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    print(f"Weather's TD: http://127.0.0.1:{port}/weather", flush=True)
    asyncio.run(agent.serve(http=port, ws=True))
