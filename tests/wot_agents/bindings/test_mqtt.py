"""MQTT binding specifics: the retained TD, topics, fire-and-forget actions, node-wot style forms."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import aiomqtt
import pytest

from wot_agents import Agent, ConnectError, Form, consume
from wot_agents.bindings import serve
from wot_agents.bindings.mqtt import Broker, LocalBroker, MqttServer
from wot_agents.bindings.mqtt._topics import form_topic, publish_properties


async def _retained(broker: Broker, topic: str) -> bytes | None:
    async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(topic)
        try:
            async with asyncio.timeout(0.5):
                async for message in client.messages:
                    return bytes(message.payload)  # type: ignore[arg-type]
        except TimeoutError:
            return None
    return None


async def test_the_td_is_retained_on_a_well_known_topic_while_serving(agent: Agent, mosquitto: str) -> None:
    broker = Broker.parse(mosquitto)
    async with serve(agent, mqtt=mosquitto) as running:
        payload = await _retained(broker, "wot/td/+")
        assert payload is not None and json.loads(payload) == running.description.to_dict()
        forms = running.description.actions["add"].forms  # type: ignore[index]
        assert forms[0].to_dict()["mqv:topic"] == "test-weather/actions/add"
        assert forms[0].href == mosquitto  # the topic is not in the URL (binding template)
        # The mqv prefix is declared in the context's object (after the TD 1.0 and 1.1 URIs).
        assert any(isinstance(entry, dict) and "mqv" in entry for entry in running.description.context)
    assert await _retained(broker, "wot/td/+") is None  # cleared: a stopped agent is not found


async def test_actions_without_output_are_fire_and_forget(mosquitto: str) -> None:
    agent = Agent("Lamp", id="urn:test:lamp")
    state = agent.property("on", bool, default=False, observable=True)

    @agent.action()
    async def toggle() -> None:
        state.set(not await state.read())

    async with serve(agent, mqtt=mosquitto) as running, consume(running.description) as thing:
        assert await thing.invoke_action("toggle") is None
        for _ in range(100):
            if await state.read():
                break
            await asyncio.sleep(0.01)
        assert await state.read() is True


async def test_topics_in_the_href_path_for_node_wot(agent: Agent, mosquitto: str) -> None:
    assert form_topic(Form(href="mqtt://b:1883/thing/properties/x"), subscribe=True) == "thing/properties/x"
    server = MqttServer(mosquitto, topic_in_href=True, root="weather")
    async with serve(agent, mqtt=server) as running:
        form = running.description.actions["add"].forms[0]  # type: ignore[index]
        assert form.href == f"{mosquitto}/weather/actions/add"
        async with consume(running.description) as thing:
            assert await thing.invoke_action("add", {"a": 1}) == 2


async def test_a_changed_description_is_republished(agent: Agent, mosquitto: str) -> None:
    broker = Broker.parse(mosquitto)
    async with serve(agent, mqtt=mosquitto) as running:
        agent.property("humidity", float, default=0.4)
        await running.refresh()
        payload = await _retained(broker, running.servers[0].td_topic)  # type: ignore[attr-defined]
        assert payload is not None and "humidity" in json.loads(payload)["properties"]


async def test_an_unreachable_broker_is_a_connect_error(agent: Agent, mosquitto: str) -> None:
    async with serve(agent, mqtt=mosquitto) as running:
        td = running.description.to_dict()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    for affordance in td["actions"].values():
        for form in affordance["forms"]:
            form["href"] = f"mqtt://127.0.0.1:{closed}"
    async with consume(td, timeout=5) as thing:
        with pytest.raises(ConnectError):
            await thing.invoke_action("add", {"a": 1})


async def test_many_concurrent_requests_are_all_answered(mosquitto: str) -> None:
    """More requests at once than paho keeps in flight (20) and than the agent runs at once: the
    rest wait their turn on both sides, and every reply reaches its own request."""
    agent = Agent("Adder", id="urn:test:adder")

    @agent.action()
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)  # replies come back in another order than the requests went
        return a + b

    server = MqttServer(mosquitto, max_in_flight=3)
    async with serve(agent, mqtt=server) as running, consume(running.description) as thing:
        results = await asyncio.gather(*(thing.invoke_action("add", {"a": n, "b": 1}) for n in range(300)))
    assert results == [n + 1 for n in range(300)]


async def test_a_lost_broker_fails_the_requests_waiting_for_it(tmp_path: Path) -> None:
    agent = Agent("Slow", id="urn:test:slow")
    started = asyncio.Event()

    @agent.action()
    async def wait() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    async with LocalBroker(log=tmp_path / "mosquitto.log") as broker:
        async with serve(agent, mqtt=broker.url) as running, consume(running.description, timeout=60) as th:
            call = asyncio.ensure_future(th.invoke_action("wait"))
            await started.wait()
            await asyncio.to_thread(broker.stop)
            with pytest.raises(ConnectError):
                await call


def test_publish_properties_are_packed_as_paho_reads_them() -> None:
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    long = "é" * 100  # over 127 bytes: the property length takes two bytes
    packed = publish_properties(
        ContentType="application/json",
        ResponseTopic="wot-agents/replies/c",
        CorrelationData=b"\x00\x01",
        UserProperty=[("status", "200"), ("traceparent", long)],
    ).pack()
    read = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    read.unpack(packed)  # type: ignore[no-untyped-call]
    assert read.ContentType == "application/json"
    assert read.ResponseTopic == "wot-agents/replies/c"
    assert read.CorrelationData == b"\x00\x01"
    assert read.UserProperty == [("status", "200"), ("traceparent", long)]
    with pytest.raises(ValueError, match="MessageExpiryInterval"):
        publish_properties(MessageExpiryInterval=5)
