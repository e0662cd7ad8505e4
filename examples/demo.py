"""The wot-agents demo: a directory, three agents on three bindings, and a router in front.

    make demo                                   # or: .venv/bin/python examples/demo.py
    .venv/bin/python examples/demo.py --once    # answer the sample questions, then stop

1. The Thing Description Directory starts on its embedded defaults (http://127.0.0.1:8081/,
   descriptions kept in ./wot-directory.db).
2. Three agents declared with the SDK start, each on another binding (HTTP, the LMOS WebSocket
   binding, MQTT through a local mosquitto when one is installed), and register their Agent
   Descriptions in the directory, renewing them before their ttl runs out.
3. A vector router (all-MiniLM-L6-v2, offline) learns the agents from the directory, not from
   this file: it knows only what the descriptions say.
4. Each question is routed to the agent whose capabilities fit, or to none, and the chosen
   agent is asked over whatever binding its TD offers.

Then, in a terminal, type your own questions; elsewhere the services keep running until Ctrl-C
so you can explore the directory (``curl http://127.0.0.1:8081/things``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from registry import DirectorySettings, create_app
from router import VectorRouter
from wot_agents import (
    Agent,
    AgentDescription,
    Capability,
    ChatRequest,
    ChatStream,
    DirectoryClient,
    Vendor,
    chat_handler,
    consume,
    serve_app,
)
from wot_agents.bindings.mqtt import LocalBroker, find_mosquitto

SAMPLES = (
    "Will it rain in Berlin tomorrow?",
    "Why is my bill so high this month?",
    "How do you say 'thank you' in German?",
    "What is the capital of Australia?",
)
DEMO_IDS = "urn:wot-agents:demo:"
VENDOR = Vendor(name="wot-agents demo", url="https://example.com/wot-agents")


def demo_agent(title: str, description: str, capabilities: list[Capability]) -> Agent:
    return Agent(
        title, id=DEMO_IDS + title.lower(), description=description, vendor=VENDOR, capabilities=capabilities
    )


def weather_agent() -> Agent:
    agent = demo_agent(
        "Weather",
        "Answers questions about the weather forecast.",
        [
            Capability(
                id="urn:wot-agents:demo:weather:forecast",
                name="Weather forecast",
                description="Tells the forecast (rain, sun, temperature, wind) for a city and a day.",
                examples=[
                    "will it rain tomorrow?",
                    "what's the weather like in Paris this weekend",
                    "how warm will it be on Monday",
                    "do I need an umbrella today",
                    "is it going to snow in Munich",
                ],
            )
        ],
    )

    @chat_handler(agent)
    async def reply(request: ChatRequest, stream: ChatStream) -> str:
        question = request.messages[-1].content.lower()
        return "Expect light rain in the afternoon, 14 °C." if "rain" in question else "Sunny, 21 °C."

    return agent


def billing_agent() -> Agent:
    agent = demo_agent(
        "Billing",
        "Helps customers with their bills and payments.",
        [
            Capability(
                id="urn:wot-agents:demo:billing:view",
                name="View bill",
                description="Shows and explains the customer's latest bill.",
                examples=["show my bill", "how much do I owe?", "why is my invoice higher than usual"],
            ),
            Capability(
                id="urn:wot-agents:demo:billing:pay",
                name="Pay bill",
                description="Pays an open bill or sets up direct debit.",
                examples=["I want to pay my bill", "set up a direct debit", "pay the open invoice"],
            ),
        ],
    )

    @chat_handler(agent)
    async def reply(request: ChatRequest, stream: ChatStream) -> str:
        return "Your bill is 42.50 EUR: 12.50 EUR more than last month for roaming in France."

    return agent


def translator_agent() -> Agent:
    agent = demo_agent(
        "Translator",
        "Translates words and sentences between English, German and French.",
        [
            Capability(
                id="urn:wot-agents:demo:translator:translate",
                name="Translate",
                description="Translates text into another language.",
                examples=[
                    "translate 'good morning' into French",
                    "what is 'cat' in German",
                    "how do you say hello in Spanish",
                ],
            )
        ],
    )

    @chat_handler(agent)
    async def reply(request: ChatRequest, stream: ChatStream) -> str:
        return "In German: 'Danke schön'." if "thank" in request.messages[-1].content.lower() else "Bonjour."

    return agent


@contextlib.asynccontextmanager
async def directory(settings: DirectorySettings) -> AsyncIterator[str]:
    async with serve_app(
        create_app(settings),
        settings.host,
        settings.port,
        read_timeout=settings.read_timeout,
        max_connections=settings.max_connections,
    ) as url:
        yield url


async def registered_agents(url: str, *, expected: int, within: float = 15.0) -> dict[str, AgentDescription]:
    """The demo's agents as the directory lists them, once all have registered (in the background)."""
    async with DirectoryClient(url) as client, asyncio.timeout(within):
        while True:
            found = await client.search(type="lmos:Agent")
            agents = {
                td["id"]: AgentDescription.from_dict(td) for td in found if td["id"].startswith(DEMO_IDS)
            }
            if len(agents) >= expected:
                return agents
            await asyncio.sleep(0.1)


async def ask(router: VectorRouter, agents: dict[str, AgentDescription], question: str) -> None:
    decision = await router.route(question, [], list(agents.values()))
    if decision.agent_id is None:
        print(f"  {question}\n    -> no agent fits (best score {decision.score:.2f}): {decision.reason}\n")
        return
    td = agents[decision.agent_id]
    async with consume(td) as thing:
        reply = await thing.chat([{"role": "user", "content": question}])
    scheme = td.actions["chat"].forms[0].href.split(":", 1)[0] if td.actions else "?"
    print(f"  {question}\n    -> {td.title} (score {decision.score:.2f}, over {scheme}): {reply.text}\n")


async def main(args: argparse.Namespace) -> int:
    settings = DirectorySettings(port=args.port, db=None if args.memory else Path(args.db))
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(directory(settings))
        print(f"directory: {url}/things (store: {settings.db or 'memory'})")
        # a private mosquitto for the MQTT agent, where one is installed (make demo installs it)
        broker = (await stack.enter_async_context(LocalBroker())).url if find_mosquitto() else None
        bindings = [
            (weather_agent(), {"http": True}),
            (billing_agent(), {"ws": True}),
            (translator_agent(), {"mqtt": broker} if broker else {"http": True}),
        ]
        for agent, binding in bindings:
            running = await stack.enter_async_context(
                agent.serve(**binding, directory=url, registration_ttl=60)
            )
            print(f"agent {agent.title:<10} on {', '.join(running.base_urls.values())}")

        agents = await registered_agents(url, expected=len(bindings))
        # The default rule (a classifier on the capabilities' examples) and its calibrated abstention:
        # a similarity gate that holds with three agents as with 150 (bench/router_gate.py).
        router = VectorRouter(args.embedder)
        stack.push_async_callback(router.aclose)
        await router.add(list(agents.values()))
        print(f"router: {len(agents)} agents from the directory, embedder {args.embedder}\n")

        for question in SAMPLES:
            await ask(router, agents, question)
        if args.once:
            return 0
        if sys.stdin.isatty():
            print("Ask anything (empty line or Ctrl-D to stop).")
            while question := (await asyncio.to_thread(_prompt)).strip():
                await ask(router, agents, question)
            return 0
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        print("serving until Ctrl-C")
        await stop.wait()
    return 0


def _prompt() -> str:
    try:
        return input("you> ")
    except EOFError:
        return ""


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--once", action="store_true", help="answer the sample questions, then stop")
    parser.add_argument("--port", type=int, default=8081, help="directory port (default 8081; 0: any free)")
    store = parser.add_mutually_exclusive_group()
    store.add_argument(
        "--db", default="wot-directory.db", help="directory database (default ./wot-directory.db)"
    )
    store.add_argument("--memory", action="store_true", help="keep the directory in memory")
    parser.add_argument("--embedder", default="minilm", help="router embedder: minilm (default) or wordllama")
    return parser.parse_args(argv)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(main(parse())))
