"""The wot-agents demo: the whole system on this machine, and every question through the runtime.

    make demo                                   # or: .venv/bin/python examples/demo.py
    .venv/bin/python examples/demo.py --once    # ask the sample questions, then stop

1. The Thing Description Directory on its embedded defaults (http://127.0.0.1:8081/,
   descriptions kept in ./wot-directory.db); its explorer page at /explorer.
2. A private mosquitto broker for the MQTT agent (started and stopped by the demo).
3. Four agents declared with the SDK, on three bindings: Weather 1.3 on HTTP, Billing on the LMOS
   WebSocket binding, Translator on MQTT, and WeatherBeta 2.0 (the canary) on HTTP. Each one
   announces itself over mDNS and registers its Agent Description in the directory.
4. The runtime (http://127.0.0.1:8080/, conversations in ./wot-runtime.db) with its default
   vector router, following the directory, and the LMOS channels of examples/demo-channels.yaml:
   version ranges pick the agents of each channel, and a ChannelRollout sends 90% of the
   conversations to the stable channel and 10% to the canary. Its chat page is at /chat.
5. The sample questions go to the runtime's LMOS chat API over HTTP, as any client would send
   them: the runtime routes each to the agent that fits and forwards it over that agent's binding.

Then type your own questions (in a terminal), or open the pages; Ctrl-C stops everything.
"""

# ruff: noqa: E402 (the clock starts before the imports: they are part of a start)
from __future__ import annotations

import time

STARTED = time.monotonic()

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

# multiprocessing starts the directory's index process by importing this file again (as
# __mp_main__): it needs none of the system, so it is spared the second of CPU they cost.
if __name__ != "__mp_main__":
    import aiohttp

    from discovery import Announcer
    from registry import DirectorySettings
    from registry import create_app as create_directory
    from runtime import Runtime, RuntimeSettings
    from runtime import create_app as create_runtime
    from wot_agents import (
        Agent,
        Capability,
        ChatRequest,
        ChatStream,
        DirectoryClient,
        Vendor,
        chat_handler,
        serve_app,
    )
    from wot_agents.bindings.mqtt import LocalBroker

T = TypeVar("T")

SAMPLES = (
    "Will it rain in Berlin tomorrow?",
    "Why is my bill so high this month?",
    "How do you say 'thank you' in German?",
    "What is the capital of Australia?",
)
DEMO_IDS = "urn:wot-agents:demo:"
TENANT, CHANNEL = "acme", "web"
CHANNELS = Path(__file__).with_name("demo-channels.yaml")
VENDOR = ("wot-agents demo", "https://example.com/wot-agents")


# --- the agents ----------------------------------------------------------------------------------


def demo_agent(
    title: str, description: str, capabilities: list[Capability], *, version: str, subset: str | None = None
) -> Agent:
    return Agent(
        title,
        id=DEMO_IDS + title.lower(),
        description=description,
        version=version,
        vendor=Vendor(name=VENDOR[0], url=VENDOR[1]),
        capabilities=capabilities,
        tenants=[TENANT],
        channels=[CHANNEL],
        subset=subset,
    )


async def say(stream: ChatStream, text: str) -> str:
    """Send the reply word by word on the agent's chatStream (the chat page shows it arrive)."""
    for index, word in enumerate(text.split(" ")):
        await stream.send(word if index == 0 else " " + word)
        await asyncio.sleep(0.04)
    return text


def forecast(version: str) -> Capability:
    return Capability(
        id="urn:wot-agents:demo:weather:forecast",
        name="Weather forecast",
        version=version,
        description="Tells the forecast (rain, sun, temperature, wind) for a city and a day.",
        examples=[
            "will it rain tomorrow?",
            "what's the weather like in Paris this weekend",
            "how warm will it be on Monday",
            "do I need an umbrella today",
            "is it going to snow in Munich",
        ],
    )


def weather_agent() -> Agent:
    agent = demo_agent(
        "Weather", "Answers questions about the weather forecast.", [forecast("1.3.0")], version="1.3.0",
        subset="stable",
    )  # fmt: skip

    @chat_handler(agent)
    async def reply(request: ChatRequest, stream: ChatStream) -> str:
        question = request.messages[-1].content.lower()
        return await say(
            stream, "Expect light rain in the afternoon, 14 °C." if "rain" in question else "Sunny, 21 °C."
        )

    return agent


def weather_beta_agent() -> Agent:
    agent = demo_agent(
        "WeatherBeta",
        "The next Weather agent, in canary: forecasts by the hour.",
        [forecast("2.0.0")],
        version="2.0.0",
        subset="canary",
    )

    @chat_handler(agent)
    async def reply(request: ChatRequest, stream: ChatStream) -> str:
        return await say(stream, "[2.0 canary] Rain from 14:00 to 17:00, 13-15 °C, wind 20 km/h.")

    return agent


def billing_agent() -> Agent:
    agent = demo_agent(
        "Billing",
        "Helps customers with their bills and payments.",
        [
            Capability(
                id="urn:wot-agents:demo:billing:view",
                name="View bill",
                version="1.1.0",
                description="Shows and explains the customer's latest bill.",
                examples=["show my bill", "how much do I owe?", "why is my invoice higher than usual"],
            ),
            Capability(
                id="urn:wot-agents:demo:billing:pay",
                name="Pay bill",
                version="1.1.0",
                description="Pays an open bill or sets up direct debit.",
                examples=["I want to pay my bill", "set up a direct debit", "pay the open invoice"],
            ),
        ],
        version="1.1.0",
    )

    @chat_handler(agent)
    async def reply(request: ChatRequest, stream: ChatStream) -> str:
        return await say(
            stream, "Your bill is 42.50 EUR: 12.50 EUR more than last month for roaming in France."
        )

    return agent


def translator_agent() -> Agent:
    agent = demo_agent(
        "Translator",
        "Translates words and sentences between English, German and French.",
        [
            Capability(
                id="urn:wot-agents:demo:translator:translate",
                name="Translate",
                version="1.0.2",
                description="Translates text into another language.",
                examples=[
                    "translate 'good morning' into French",
                    "what is 'cat' in German",
                    "how do you say hello in Spanish",
                ],
            )
        ],
        version="1.0.2",
    )

    @chat_handler(agent)
    async def reply(request: ChatRequest, stream: ChatStream) -> str:
        thanks = "thank" in request.messages[-1].content.lower()
        return await say(stream, "In German: 'Danke schön'." if thanks else "Bonjour.")

    return agent


# --- showing progress ----------------------------------------------------------------------------


async def progress(work: Awaitable[T], what: str) -> T:
    """Await ``work`` while saying what is going on (a ticking clock on a terminal)."""
    started = time.monotonic()
    tty = sys.stdout.isatty()
    print(f"  {what}...", end="" if tty else "\n", flush=True)

    async def tick() -> None:
        while True:
            await asyncio.sleep(1)
            print(f"\r  {what}... {time.monotonic() - started:.0f} s", end="", flush=True)

    ticker = asyncio.create_task(tick()) if tty else None
    try:
        return await work
    finally:
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        print(f"\r  {what}: done in {time.monotonic() - started:.1f} s", flush=True)


async def enter_together(stack: contextlib.AsyncExitStack, *managers: Any) -> list[Any]:
    """Enter async context managers concurrently. Each one entered is left when ``stack`` closes,
    also when another failed to start (its error is raised) or Ctrl-C came meanwhile."""
    tasks = [asyncio.ensure_future(manager.__aenter__()) for manager in managers]
    try:
        await asyncio.wait(tasks)
    finally:
        for task in tasks:
            task.cancel()  # a no-op on those done
        await asyncio.wait(tasks)
        for manager, task in zip(managers, tasks, strict=True):
            if not task.cancelled() and task.exception() is None:
                stack.push_async_exit(manager)
    for task in tasks:
        error = task.exception()
        if error is not None:
            raise error
    return [task.result() for task in tasks]


async def registered(url: str, ids: set[str], within: float = 30.0) -> None:
    """Until every demo agent has registered itself (they do so in the background)."""
    async with DirectoryClient(url) as client, asyncio.timeout(within):
        while not ids <= {td["id"] for td in await client.search(type="lmos:Agent")}:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


# --- asking the runtime --------------------------------------------------------------------------


class Client:
    """The runtime's LMOS chat API over HTTP, as any LMOS client calls it."""

    def __init__(self, http: aiohttp.ClientSession, url: str, bindings: dict[str, str]) -> None:
        self.http = http
        self.url = url
        self.bindings = bindings  # agent id -> the scheme of its chat form

    async def ask(self, question: str, conversation: str, *, subset: str | None = None) -> str:
        body = {
            "inputContext": {"messages": [{"role": "user", "format": "text", "content": question}]},
            "systemContext": {"channelId": CHANNEL},
            "userContext": {"userId": "demo"},
        }
        headers = {"x-turn-id": uuid.uuid4().hex, **({"x-subset": subset} if subset else {})}
        path = f"/apis/v1/{TENANT}/chat/{conversation}/message"
        async with self.http.post(self.url + path, json=body, headers=headers) as response:
            answer: dict[str, Any] = await response.json()
        if response.status != 200:
            return f"    -> no agent fits ({answer.get('errorCode')}): {answer.get('message')}\n"
        agent, routing = answer["agent"], answer["routing"]
        over = self.bindings.get(agent["id"], "?")
        return (
            f"    -> {agent['name']} (score {routing['score']:.2f}, {routing['method']}, subset "
            f"{routing['subset']}, over {over}): {answer['content']}\n"
        )


def conversations(runtime: Runtime, subset: str, count: int) -> list[str]:
    """The first ``count`` conversation ids (demo-1, demo-2...) the rollout gives to ``subset``."""
    found: list[str] = []
    index = 0
    while len(found) < count:
        index += 1
        if runtime.subset_for(TENANT, CHANNEL, f"demo-{index}", None) == subset:
            found.append(f"demo-{index}")
    return found


async def lines() -> AsyncIterator[str]:
    """The lines typed on the terminal, read without a thread (Ctrl-C never waits for one)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    buffer = b""

    def readable() -> None:
        nonlocal buffer
        data = os.read(sys.stdin.fileno(), 4096)
        if not data:
            queue.put_nowait(None)
            return
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            queue.put_nowait(line.decode(errors="replace"))

    loop.add_reader(sys.stdin.fileno(), readable)
    try:
        while (line := await queue.get()) is not None:
            yield line
    finally:
        loop.remove_reader(sys.stdin.fileno())


# --- the demo ------------------------------------------------------------------------------------


async def demo(args: argparse.Namespace) -> int:
    host = "127.0.0.1"
    async with contextlib.AsyncExitStack() as stack:
        print("Starting the wot-agents demo")
        db = None if args.memory else Path(args.db)
        settings = DirectorySettings(host=host, port=args.port, db=db)
        directory = await stack.enter_async_context(
            serve_app(
                create_directory(settings),
                host,
                args.port,
                read_timeout=settings.read_timeout,
                max_connections=settings.max_connections,
            )
        )
        print(f"  directory     {directory}/  (descriptions in {db or 'memory'})")
        broker = await stack.enter_async_context(LocalBroker())
        print(f"  mosquitto     {broker.url}")
        agents: list[tuple[Agent, dict[str, Any]]] = [
            (weather_agent(), {"http": True}),
            (billing_agent(), {"ws": True}),
            (translator_agent(), {"mqtt": broker.url}),
            (weather_beta_agent(), {"http": True}),
        ]
        mdns = not args.no_mdns
        # Everything that mostly waits (mDNS probing, the model loading on its thread) starts
        # side by side: a second start is ready in seconds.
        served = await enter_together(
            stack,
            *(
                # DNS-SD announces where a TD is fetched over HTTP: an agent with a web server
                # serves its own; the MQTT-only one is announced with its TD's URL in the directory.
                agent.serve(**binding, directory=directory, announce=mdns and "mqtt" not in binding)
                for agent, binding in agents
            ),
        )
        bindings: dict[str, str] = {}
        for (agent, binding), running in zip(agents, served, strict=True):
            (bindings[agent.id],) = binding
            where = ", ".join(running.base_urls.values())
            print(
                f"  agent         {agent.title} {agent.version} ({agent.subset or 'any subset'}) on {where}"
            )
        await progress(registered(directory, set(bindings)), "the agents register in the directory")

        runtime = Runtime(
            RuntimeSettings(
                directory=directory,
                channels=[str(CHANNELS)],
                store=None if args.memory else args.store,
                embedder=args.embedder,
            )
        )
        starting: list[contextlib.AbstractAsyncContextManager[Any]] = [
            serve_app(create_runtime(runtime=runtime), host, args.runtime_port)
        ]
        if mdns:
            port = urlsplit(directory).port or 80
            starting += [
                Announcer(
                    running.description,
                    port=port,
                    td_path=f"/things/{quote(agent.id, safe='')}",
                    listen_host=host,
                )
                for (agent, binding), running in zip(agents, served, strict=True)
                if "mqtt" in binding
            ]
        runtime_url, *_ = await progress(
            enter_together(stack, *starting), "the runtime starts (and the MQTT agent is announced)"
        )
        if mdns:
            print(f"  mDNS          {len(agents)} agents announced as _wot._tcp.local. services")
        await progress(
            runtime.warmed.wait(),
            f"the runtime's router loads its model ({args.embedder}) and learns the agents",
        )
        stable = sum(runtime.subset_for(TENANT, CHANNEL, f"c{i}", None) == "stable" for i in range(1000))
        print(
            f"  runtime       {runtime_url}/  (router: {runtime.settings.router}; channels "
            f"{CHANNELS.name}: of 1000 conversations the rollout sends {stable} to stable, "
            f"{1000 - stable} to canary)"
        )
        print(f"\nReady in {time.monotonic() - STARTED:.1f} s. Open in a browser:")
        print(f"  explorer      {directory}/explorer")
        print(f"  chat          {runtime_url}/chat?tenant={TENANT}&channel={CHANNEL}\n")

        http = await stack.enter_async_context(aiohttp.ClientSession())
        client = Client(http, runtime_url, bindings)
        print(f"Asking the runtime: POST {runtime_url}/apis/v1/{TENANT}/chat/<conversation>/message\n")
        for question, conversation in zip(
            SAMPLES, conversations(runtime, "stable", len(SAMPLES)), strict=True
        ):
            print(f"  {question}  [conversation {conversation}]")
            print(await client.ask(question, conversation))
        (canary,) = conversations(runtime, "canary", 1)
        print(f"  {SAMPLES[0]}  [conversation {canary}: one the rollout gives to the canary]")
        print(await client.ask(SAMPLES[0], canary))
        if args.once:
            return 0
        if sys.stdin.isatty():
            print("Ask anything (Ctrl-D or Ctrl-C to stop):")
            print("you> ", end="", flush=True)
            async for question in lines():
                if question.strip():
                    print(await client.ask(question.strip(), "demo-you"))
                print("you> ", end="", flush=True)
            return 0
        print("Serving until Ctrl-C.")
        await asyncio.Event().wait()
    return 0


async def main(args: argparse.Namespace) -> int:
    """Run the demo until it ends or Ctrl-C / SIGTERM; either way everything it started stops."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await demo(args)
    except asyncio.CancelledError:
        print("\nStopped: the agents, the broker, the runtime and the directory are down.")
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--once", action="store_true", help="ask the sample questions, then stop")
    parser.add_argument("--port", type=int, default=8081, help="directory port (default 8081; 0: any free)")
    parser.add_argument("--runtime-port", type=int, default=8080, help="runtime port (default 8080; 0: any)")
    parser.add_argument("--db", default="wot-directory.db", help="directory database (./wot-directory.db)")
    parser.add_argument("--store", default="wot-runtime.db", help="runtime conversations (./wot-runtime.db)")
    parser.add_argument("--memory", action="store_true", help="keep descriptions and conversations in memory")
    parser.add_argument("--embedder", default="minilm", help="router embedder: minilm (default) or wordllama")
    parser.add_argument("--no-mdns", action="store_true", help="do not announce the agents over mDNS")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
