"""Serve the Weather agent over HTTP, WebSocket and MQTT at once, and use it over each binding."""

import asyncio

from weather import agent, alerts  # examples/weather.py

from wot_agents import BearerAuth, BearerToken, consume
from wot_agents.bindings.mqtt import LocalBroker


async def main() -> None:
    # LocalBroker: a private mosquitto for this process (apt install mosquitto); or your broker's URL.
    async with (
        LocalBroker() as broker,
        agent.serve(
            http=True, ws=True, mqtt=broker.url, security=BearerAuth({"s3cret"}), cors="*"
        ) as running,
    ):
        print(running.base_urls)  # {"http": "http://127.0.0.1:PORT", "ws": "ws://...", "mqtt": "mqtt://..."}
        td = running.description  # the TD with forms for all three bindings

        async with consume(td, credentials=BearerToken("s3cret"), prefer=["mqtt", "http"]) as thing:
            print(await thing.invoke_action("forecast", {"city": "Berlin"}))
            print(await thing.read_property("unit"))
            await thing.write_property("unit", "kelvin")
            async with await thing.subscribe_event("alert") as events:  # also observe_property()
                await alerts.emit("Storm warning")
                async for alert in events:
                    print(alert)
                    break


asyncio.run(main())
