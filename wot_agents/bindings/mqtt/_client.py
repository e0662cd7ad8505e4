"""The MQTT binding, client side: one broker connection per broker and credentials.

A reader task routes every message to the local subscriptions whose filter matches it (a
filter subscribed twice is subscribed once at the broker, reference-counted) and action
replies to their request by MQTT 5 correlation data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

from ..._errors import ConnectError
from ..._model import Form
from ..._problem import ProblemDetails
from ..._trace import trace_headers
from .._interfaces import Interaction, Stream
from .._vocabulary import MAX_REPLY, MQTT_CONTROL_PACKETS, decode_payload, mqtt_control_packet, mqtt_qos
from ._proof import prove
from ._topics import REPLY_TOPIC_PREFIX, Broker, Wire, form_topic, publish_properties

__all__ = ["MqttClient"]

log = logging.getLogger("wot_agents.bindings")


class _Connection:
    def __init__(
        self,
        broker: Broker,
        username: str | None,
        password: str | None,
        tls: ssl.SSLContext | None = None,
        max_reply: int = MAX_REPLY,
    ) -> None:
        self.broker = broker
        self.tls = tls
        self.max_reply = max_reply
        self.username, self.password = username, password
        self.client: Any = None
        #: The hot path (publishes, replies), once connected.
        self.wire: Wire
        #: The client identifier names the reply topic, so a broker ACL can give each client its
        #: own replies only (mosquitto: ``pattern read wot-agents/replies/%c``).
        self.identifier = f"wot-agents-{uuid.uuid4().hex}"
        self.reply_topic = REPLY_TOPIC_PREFIX + self.identifier
        self.replies: dict[bytes, asyncio.Future[Any]] = {}
        self.subscribers: dict[str, list[asyncio.Queue[Any]]] = {}
        self._stack = AsyncExitStack()
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def open(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def connect(self, timeout: float) -> None:  # noqa: ASYNC109 - it bounds CONNECT only
        client = await self.broker.connect(
            self._stack,
            username=self.username,
            password=self.password,
            timeout=timeout,
            identifier=self.identifier,
            tls_context=self.tls,
            # The broker drops larger messages rather than sending them (MQTT 5, 3.1.2.11.4).
            max_packet_size=self.max_reply + 64 * 1024,
        )
        # Before subscribing: retained values arrive right after a SUBACK.
        self.wire = Wire(client, self._on_message)
        await client.subscribe(self.reply_topic, qos=1)
        self.client = client
        self._reader = asyncio.ensure_future(self._watch())

    def _on_message(self, message: Any) -> None:
        """Each message, as paho reads it: a reply to its request (by MQTT 5 correlation data),
        anything else to the local subscriptions whose filter matches its topic."""
        try:
            topic = message.topic
            if topic == self.reply_topic:
                correlation = getattr(message.properties, "CorrelationData", None)
                future = self.replies.get(bytes(correlation or b""))
                if future is not None and not future.done():
                    future.set_result(message)
                return
            for pattern, queues in self.subscribers.items():
                if self.wire.matches(pattern, topic):
                    for queue in queues:
                        queue.put_nowait(message)
        except Exception:  # a topic that is not UTF-8: nobody subscribed to it
            log.debug("MQTT: dropped a message from %s", self.broker.url, exc_info=True)

    async def _watch(self) -> None:
        """Wait for the broker to go (aiomqtt's message iteration ends), then wake everyone up."""
        try:
            async for _ in self.client.messages:  # every message went to _on_message: none here
                pass
        except Exception:  # the broker went away
            pass
        finally:
            for future in self.replies.values():
                if not future.done():
                    future.set_exception(
                        ConnectError(f"lost the MQTT broker {self.broker.url}", href=self.broker.url)
                    )
            for queues in self.subscribers.values():
                for queue in queues:
                    queue.put_nowait(None)

    async def subscribe(self, pattern: str, qos: int) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        async with self._lock:
            queues = self.subscribers.setdefault(pattern, [])
            queues.append(queue)
            if len(queues) == 1:
                await self.client.subscribe(pattern, qos=qos)
        return queue

    async def unsubscribe(self, pattern: str, queue: asyncio.Queue[Any]) -> None:
        async with self._lock:
            queues = self.subscribers.get(pattern, [])
            if queue in queues:
                queues.remove(queue)
            if not queues:
                self.subscribers.pop(pattern, None)
                if self.open:
                    with contextlib.suppress(Exception):
                        await self.client.unsubscribe(pattern, timeout=5)

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(Exception):
            await self._stack.aclose()


class MqttClient:
    """MQTT 5 client for ``mqtt``/``mqtts`` forms (needs the ``mqtt`` extra)."""

    schemes = frozenset({"mqtt", "mqtts"})

    def __init__(self, *, tls: ssl.SSLContext | None = None, max_reply: int = MAX_REPLY) -> None:
        #: The TLS context for ``mqtts`` brokers (with a client certificate: mutual TLS).
        self.tls = tls
        #: The largest message the broker may deliver to this client (larger ones it drops).
        self.max_reply = max_reply
        self._connections: dict[tuple[Broker, str | None, str | None], _Connection] = {}
        self._lock = asyncio.Lock()

    def accepts(self, form: Form, op: str) -> bool:
        if op not in MQTT_CONTROL_PACKETS:
            return False
        try:
            form_topic(form, subscribe=mqtt_control_packet(form, op) == "mqv:subscribe")
        except ValueError:
            return False
        return True

    async def aclose(self) -> None:
        connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            await connection.aclose()

    async def _connection(self, interaction: Interaction) -> _Connection:
        broker = Broker.parse(interaction.href)
        key = (broker, interaction.auth.username, interaction.auth.password)
        async with self._lock:
            connection = self._connections.get(key)
            if connection is None or not connection.open:
                connection = _Connection(
                    broker, interaction.auth.username, interaction.auth.password, self.tls, self.max_reply
                )
                await connection.connect(interaction.timeout)
                self._connections[key] = connection
            return connection

    def _user_properties(self, interaction: Interaction, topic: str, body: bytes) -> list[tuple[str, str]]:
        """The credentials as MQTT 5 user properties: a proof for this request in place of a secret.

        Anyone subscribed to the topic reads them (see ``_proof``).
        """
        auth = interaction.auth
        return [
            (name, prove(value, topic, body) if name in auth.reusable else value)
            for name, value in [*auth.headers.items(), *auth.query.items()]
        ]

    async def request(self, interaction: Interaction, payload: Any = None) -> Any:
        connection = await self._connection(interaction)
        form = interaction.form
        qos = mqtt_qos(form)
        if mqtt_control_packet(form, interaction.op) == "mqv:subscribe":
            # readproperty: the retained message is the current value.
            pattern = form_topic(form, subscribe=True)
            queue = await connection.subscribe(pattern, qos)
            try:
                async with asyncio.timeout(interaction.timeout):
                    message = await queue.get()
            except TimeoutError:
                raise interaction.timed_out(f"{pattern!r} (nothing retained)") from None
            finally:
                await connection.unsubscribe(pattern, queue)
            if message is None:
                raise interaction.unreachable("lost the broker")
            return decode_payload(message.payload)
        topic = form_topic(form, subscribe=False)
        body = b"" if payload is None and interaction.op == "invokeaction" else json.dumps(payload).encode()
        members: dict[str, Any] = {"ContentType": form.content_type or "application/json"}
        user_properties = [*self._user_properties(interaction, topic, body), *trace_headers().items()]
        if user_properties:
            members["UserProperty"] = user_properties
        retain = bool(form.mqtt_retain)
        if not interaction.expects_reply:
            try:
                async with asyncio.timeout(interaction.timeout):
                    await connection.wire.publish_acknowledged(
                        topic, body, qos=qos, retain=retain, properties=publish_properties(**members)
                    )
            except TimeoutError:
                raise interaction.timed_out(f"{topic!r} (no acknowledgement)") from None
            return None
        correlation = uuid.uuid4().bytes
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        connection.replies[correlation] = future
        members.update(ResponseTopic=connection.reply_topic, CorrelationData=correlation)
        try:
            async with asyncio.timeout(interaction.timeout):
                # The reply tells that the request arrived: no need to wait for its PUBACK too.
                connection.wire.publish(
                    topic, body, qos=qos, retain=retain, properties=publish_properties(**members)
                )
                message = await future
        except TimeoutError:
            raise interaction.timed_out(f"{topic!r}") from None
        finally:
            connection.replies.pop(correlation, None)
        status = dict(getattr(message.properties, "UserProperty", None) or []).get("status", "200")
        if not status.isdigit() or int(status) >= 300:
            code = int(status) if status.isdigit() else None
            problem = ProblemDetails.from_body(bytes(message.payload or b""), status=code)
            raise interaction.refused(code, problem.message, problem.to_dict())
        return decode_payload(message.payload)

    async def stream(self, interaction: Interaction) -> Stream[Any]:
        connection = await self._connection(interaction)
        pattern = form_topic(interaction.form, subscribe=True)
        queue = await connection.subscribe(pattern, mqtt_qos(interaction.form))

        async def values() -> AsyncIterator[Any]:
            while True:
                message = await queue.get()
                if message is None:
                    raise interaction.unreachable("lost the broker")
                if message.payload:  # an empty retained message clears a value: not a value
                    yield decode_payload(message.payload)

        async def close() -> None:
            await connection.unsubscribe(pattern, queue)

        return Stream(values(), close)
