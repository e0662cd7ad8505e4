"""The Weather agent: an action, a property and an event (the other examples import it)."""

from pydantic import BaseModel

from wot_agents import Agent, Capability, Vendor

agent = Agent(
    "Weather",
    id="urn:example:weather",  # stable across restarts; default: a fresh urn:uuid
    description="Answers weather questions.",
    vendor=Vendor(name="WeatherAI", url="https://weather.example.com"),
    capabilities=[
        Capability(
            id="urn:weather:forecast",
            name="Forecast",
            examples=["will it rain tomorrow?", "forecast for Berlin"],
        )
    ],
    tenants=["acme"],
    channels=["web"],
)


class Forecast(BaseModel):
    city: str
    temperature: float


@agent.action(safe=True)
async def forecast(city: str, days: int = 1) -> Forecast:
    """Tells the forecast for a city."""  # becomes the action's description
    return Forecast(city=city, temperature=21.0)


unit = agent.property("unit", str, default="celsius", observable=True)
alerts = agent.event("alert", str)
