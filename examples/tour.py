"""An agent the runtime can route to, found on the LAN and in the directory (Ctrl-C stops it)."""

import asyncio

from wot_agents import Agent, Capability, ChatRequest, ChatStream, chat_handler

agent = Agent(
    "Weather",
    id="urn:example:weather",
    tenants=["acme"],
    channels=["web"],
    capabilities=[
        Capability(
            id="urn:example:forecast",
            name="Forecast",
            examples=["will it rain tomorrow?", "forecast for Berlin"],
        )
    ],
)


@chat_handler(agent)
async def reply(request: ChatRequest, stream: ChatStream) -> str:
    return "Light rain in the afternoon."


# Announced by mDNS and registered in the directory until Ctrl-C or SIGTERM (then: goodbye, deregistered).
asyncio.run(agent.serve(http=True, announce=True, directory="http://127.0.0.1:8081"))
