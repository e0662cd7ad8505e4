"""The MQTT binding, server side: an agent as a client of a broker.

Per the W3C MQTT binding template: properties are retained messages (``readproperty`` and
``observeproperty`` subscribe, ``writeproperty`` publishes), events are plain publishes,
actions are request/response with MQTT 5 (the request's response topic and correlation data
carry the reply; without a response topic the action runs and nothing is answered). The TD is
retained on ``wot/td/{root}`` and cleared when the agent stops.

Security: the broker decides who may connect and subscribe; the agent itself checks the
credentials a request carries as MQTT 5 user properties (the same names and values as the
HTTP headers) before it writes a property or runs an action. Replies go only to response
topics in the reply namespace (``REPLY_TOPIC_PREFIX``), and the agent watches what it retains
(its TD, its property values): a stranger's retained publish there is overwritten again at once.
Requests larger than ``MAX_PAYLOAD`` are refused (413), and the broker is told (MQTT 5 Maximum
Packet Size) not to deliver anything much larger at all.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from ..._errors import TrustError, WotAgentsError
from ..._model import AgentDescription, Form
from ..._problem import PROBLEM_JSON, HTTPProblem, ProblemDetails
from ..._trace import caller_trace, current_trace
from ...trust._tls import MTLS_SCHEME
from .._interfaces import ServeContext
from .._security import Presented, ServerSecurity
from .._vocabulary import CONTENT_TYPE, Kind, decode_request, encode_payload
from ._proof import ProofChecker
from ._topics import (
    MAX_PAYLOAD,
    REPLY_TOPIC_PREFIX,
    TD_TOPIC_PREFIX,
    Broker,
    Wire,
    publish_properties,
    reply_topic_allowed,
)

__all__ = ["MqttServer"]

log = logging.getLogger("wot_agents.bindings")


class MqttServer:
    """Serves an agent through an MQTT broker.

    ``topic_in_href`` also puts each topic in its form's href path, for consumers such as
    node-wot 0.8 that read topics only from there (the binding template keeps them out).
    """

    def __init__(
        self,
        broker: str = "mqtt://127.0.0.1:1883",
        *,
        root: str | None = None,
        qos: int = 1,
        username: str | None = None,
        password: str | None = None,
        public_url: str | None = None,
        topic_in_href: bool = False,
        max_in_flight: int = 256,
        max_payload: int = MAX_PAYLOAD,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if root is not None and (root + "/").startswith(REPLY_TOPIC_PREFIX):
            raise ValueError(f"the topic root {root!r} is inside the reply namespace {REPLY_TOPIC_PREFIX!r}")
        self.broker = Broker.parse(broker)
        self.max_payload = max_payload
        #: The client TLS context for an ``mqtts`` broker (with a certificate: mutual TLS).
        self.tls = tls
        #: What this agent last retained, by topic: restored when someone else overwrites it.
        self._retained: dict[str, bytes] = {}
        self._proofs: ProofChecker | None = None
        self.public_url = (public_url or self.broker.url).rstrip("/")
        self.root = root
        self.qos = qos
        self.topic_in_href = topic_in_href
        self._username, self._password = username, password
        self._max_in_flight = max_in_flight
        self._running = 0
        #: Requests read while ``max_in_flight`` ran already; each starts as one finishes.
        self._backlog: collections.deque[Any] = collections.deque()
        self._wire: Wire | None = None
        self._context: ServeContext | None = None
        self._client: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str | None:
        return self.public_url

    def urls(self) -> dict[str, str]:
        return {"mqtt": self.public_url}

    # --- topics and forms ------------------------------------------------------------------------

    def _root(self) -> str:
        assert self._context is not None
        return self.root or self._context.slug

    def topic(self, kind: Kind, name: str, *, write: bool = False) -> str:
        plural = {"property": "properties", "action": "actions", "event": "events"}[kind]
        return f"{self._root()}/{plural}/{name}" + ("/writeproperty" if write else "")

    @property
    def td_topic(self) -> str:
        return TD_TOPIC_PREFIX + self._root()

    def _form(self, op: str | list[str], topic: str, *, filter_: bool, **extra: Any) -> Form:
        href = f"{self.public_url}/{topic}" if self.topic_in_href else self.public_url
        term = {"mqtt_filter": topic} if filter_ else {"mqtt_topic": topic}
        return Form(href=href, op=op, content_type=CONTENT_TYPE, mqtt_qos=str(self.qos), **term, **extra)

    def forms(self, kind: Kind, name: str) -> list[Form]:
        assert self._context is not None
        agent = self._context.agent
        if kind == "property" and name in agent.properties:
            affordance = agent.properties[name].affordance
            forms = []
            if not affordance.write_only:
                forms.append(
                    self._form(
                        ["readproperty", "observeproperty", "unobserveproperty"],
                        self.topic(kind, name),
                        filter_=True,
                        mqtt_retain=True,
                    )
                )
            if not affordance.read_only:
                forms.append(self._form("writeproperty", self.topic(kind, name, write=True), filter_=False))
            return forms
        if kind == "action" and name in agent.actions:
            return [self._form("invokeaction", self.topic(kind, name), filter_=False)]
        if kind == "event" and name in agent.events:
            return [self._form(["subscribeevent", "unsubscribeevent"], self.topic(kind, name), filter_=True)]
        return []

    def thing_forms(self) -> list[Form]:
        return []

    # --- serving ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def run(self, context: ServeContext) -> AsyncIterator[None]:
        self._context = context
        self._proofs = ProofChecker(context.security)
        async with AsyncExitStack() as stack:
            client = await self.broker.connect(
                stack,
                username=self._username,
                password=self._password,
                identifier=f"wot-agents-{self._root()}-{id(self):x}",
                # Headroom over the payload limit for the topic and properties: the broker drops
                # anything larger instead of making the agent read it (MQTT 5, 3.1.2.11.4).
                max_packet_size=self.max_payload + 64 * 1024,
                tls_context=self.tls,
            )
            self._client = client
            # Before subscribing: what the broker delivers then goes to _on_message.
            self._wire = Wire(client, self._on_message)
            try:
                await client.subscribe(f"{self._root()}/actions/+", qos=self.qos)
                await client.subscribe(f"{self._root()}/properties/+/writeproperty", qos=self.qos)
                # What this agent retains, watched so a stranger's overwrite is undone; noLocal:
                # the agent's own publishes are not echoed back to it.
                from paho.mqtt.subscribeoptions import SubscribeOptions

                for watched in (f"{self._root()}/properties/+", self.td_topic):
                    options = SubscribeOptions(qos=self.qos, noLocal=True)
                    await client.subscribe(watched, options=options)
                for name, prop in context.agent.properties.items():
                    if not prop.affordance.write_only:
                        # Every readable property, observable or not: its retained value must stay current.
                        updates = prop.observe()
                        await self._publish_property(name, await prop.read())
                        self._spawn(self._forward(updates, "property", name))
                for name, event in context.agent.events.items():
                    self._spawn(self._forward(event.subscribe(), "event", name))
                yield
            finally:
                await self._stop()

    async def _stop(self) -> None:
        self._backlog.clear()
        # Cancel until done: aiomqtt waits with asyncio.wait_for, which on Python 3.11 can swallow
        # a cancellation that arrives as the PUBACK does; one cancel() then left a task running
        # and shutdown hanging.
        while pending := {task for task in self._tasks if not task.done()}:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.5)
        client, self._client = self._client, None
        # Clear what we retained, so nobody finds a stopped agent or its stale values.
        with contextlib.suppress(Exception):
            await client.publish(self.td_topic, b"", qos=self.qos, retain=True, timeout=2)
            assert self._context is not None
            for name, prop in self._context.agent.properties.items():
                if not prop.affordance.write_only:
                    await client.publish(
                        self.topic("property", name), b"", qos=self.qos, retain=True, timeout=2
                    )

    async def description_changed(self, description: AgentDescription) -> None:
        if self._client is not None:
            await self._retain(self.td_topic, description.to_json().encode())

    async def _retain(self, topic: str, payload: bytes) -> None:
        """Publish ``payload`` retained on ``topic``, as what this agent owns there."""
        self._retained[topic] = payload
        members = {"ContentType": "application/td+json" if topic == self.td_topic else CONTENT_TYPE}
        assert self._wire is not None
        await self._wire.publish_acknowledged(
            topic, payload, qos=self.qos, retain=True, properties=publish_properties(**members)
        )

    def _watched(self, topic: str) -> bool:
        """Whether ``topic`` is one this agent retains (its TD, a property value)."""
        name = topic.removeprefix(f"{self._root()}/properties/")
        return topic == self.td_topic or (name != topic and "/" not in name)

    def _broker_verified(self, scheme: ServerSecurity) -> bool:
        """Whether the broker already checked this scheme: a client certificate (``lmos:mtls``
        admitting any DID of the CA), when this agent reaches an mqtts broker with its own
        certificate; the broker must require certificates (mosquitto ``require_certificate true``).
        The agent never sees the caller's certificate, so a scheme naming DIDs is not passed."""
        definition = scheme.definition()
        return (
            definition.scheme == MTLS_SCHEME
            and not (definition.model_extra or {}).get("lmos:identities")
            and self.tls is not None
            and self.broker.tls
        )

    async def _dispatch(self, parts: list[str], value: Any) -> Any:
        """Write the property or invoke the action a request topic names (the reply, or None)."""
        assert self._context is not None
        if parts[-1] == "writeproperty":
            name = parts[-2]
            prop = self._context.agent.properties.get(name)
            if prop is None or prop.affordance.read_only:
                raise HTTPProblem(404, f"no writable property {name!r}")
            await prop.write(value)
            return None
        name = parts[-1]
        action = self._context.agent.actions.get(name)
        if action is None:
            raise HTTPProblem(404, f"no action {name!r}")
        return await action.invoke(value)

    async def _restore(self, topic: str, payload: bytes) -> None:
        """Someone published on a topic this agent retains: put the agent's own value back."""
        owned = self._retained.get(topic)
        if owned is not None and payload != owned:
            log.warning("MQTT: %s was overwritten by another client; restoring it", topic)
            await self._retain(topic, owned)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_property(self, name: str, value: Any) -> None:
        await self._retain(self.topic("property", name), encode_payload(value))

    async def _forward(self, values: AsyncIterator[Any], kind: Kind, name: str) -> None:
        try:
            async for value in values:
                if kind == "property":
                    await self._publish_property(name, value)
                else:
                    # Waiting for the broker's acknowledgement paces the events (slow: the oldest drop).
                    assert self._wire is not None
                    await self._wire.publish_acknowledged(
                        self.topic(kind, name), encode_payload(value), qos=self.qos
                    )
        finally:
            aclose = getattr(values, "aclose", None)
            if aclose is not None:
                await aclose()

    def _on_message(self, message: Any) -> None:
        """Each message, as paho reads it: handled in a task of its own, ``max_in_flight`` at once."""
        if self._running >= self._max_in_flight:
            self._backlog.append(message)
        else:
            self._start(message)

    def _start(self, message: Any) -> None:
        self._running += 1
        task = asyncio.ensure_future(self._handle(message))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._running -= 1
        if self._backlog and self._client is not None:
            self._start(self._backlog.popleft())

    async def _handle(self, message: Any) -> None:
        assert self._context is not None
        topic = str(message.topic)
        if self._watched(topic):
            await self._restore(topic, bytes(message.payload or b""))
            return
        parts = topic.split("/")
        properties = message.properties
        user_properties = dict(getattr(properties, "UserProperty", None) or [])
        # The caller's trace (MQTT 5 user properties traceparent/tracestate) is current while the
        # request is handled; this task runs in its own copy of the context, nothing to restore.
        current_trace.set(caller_trace(user_properties.get("traceparent"), user_properties.get("tracestate")))
        reply_to = getattr(properties, "ResponseTopic", None)
        correlation = getattr(properties, "CorrelationData", None)
        if reply_to is not None and not reply_topic_allowed(reply_to):
            # Never publish where a request says if it is not a reply topic: that could be an
            # affordance topic of this agent or another one. The request is not run either.
            log.warning(
                "MQTT request on %s refused: response topic %r is outside %s",
                topic,
                reply_to,
                REPLY_TOPIC_PREFIX,
            )
            return
        reply: Any = None
        error: ProblemDetails | None = None
        try:
            payload = bytes(message.payload or b"")
            assert self._proofs is not None
            headers = self._proofs.resolve(user_properties, topic, payload)
            presented = Presented(headers=headers, query=headers)
            for scheme in self._context.security:
                if self._broker_verified(scheme):
                    continue
                if not scheme.authenticate(presented):
                    raise HTTPProblem(401, f"the {scheme.name} security scheme was not satisfied")
            if len(payload) > self.max_payload:
                raise HTTPProblem(413, f"the payload is {len(payload)} bytes, over {self.max_payload}")
            value = decode_request(payload, getattr(properties, "ContentType", None))
            access = self._context.access
            if access is not None:  # the credential travels in the user properties (MQTT 5)
                try:
                    caller = await access.identify(presented, self._context.thing_id)
                except TrustError as exc:
                    raise HTTPProblem(401, f"the caller's proof was refused: {exc}") from None
                with access.acting(caller):
                    reply = await self._dispatch(parts, value)
            else:
                reply = await self._dispatch(parts, value)
        except Exception as exc:
            if not isinstance(exc, WotAgentsError):
                log.exception("MQTT request on %s failed", message.topic)
            error = ProblemDetails.from_exception(exc)
        if not reply_to:
            if error:
                log.warning(
                    "MQTT request on %s failed with nowhere to reply: %s", message.topic, error.message
                )
            return
        if error is not None:
            status, body, content_type = error.status, error.to_json(), PROBLEM_JSON
        else:
            status, content_type = 200, CONTENT_TYPE
            body = encode_payload(reply) if reply is not None else b""
        members: dict[str, Any] = {"UserProperty": [("status", str(status))], "ContentType": content_type}
        if correlation is not None:
            members["CorrelationData"] = correlation
        # Sent at the end of this loop step; its PUBACK is not waited for: the caller waits for
        # the reply itself, and paho keeps at most 20 unacknowledged (queueing the rest).
        assert self._wire is not None
        self._wire.publish(reply_to, body, qos=self.qos, properties=publish_properties(**members))
