"""MQTT brokers (address, connecting) and the topic layout, shared by the MQTT server and client.

Topics follow the layout Eclipse Thingweb node-wot uses, so either side can talk to the
other: ``{root}/properties/{name}`` (retained values), ``{root}/properties/{name}/writeproperty``,
``{root}/actions/{name}``, ``{root}/events/{name}``. The TD itself is retained on
``wot/td/{root}`` so an MQTT-only client finds every agent on a broker with ``wot/td/+``.

Action replies go only to topics under ``wot-agents/replies/`` (``REPLY_TOPIC_PREFIX``): an
agent refuses any other MQTT 5 response topic, so no request can make it publish on an
affordance topic (its own or another agent's) or the TD topic. A broker ACL can then let each
client subscribe to its own reply topic only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..._errors import ConnectError, RequestTimeout
from ..._model import Form

__all__ = [
    "MAX_PAYLOAD",
    "REPLY_TOPIC_PREFIX",
    "TD_TOPIC_PREFIX",
    "Broker",
    "form_topic",
    "publish_properties",
    "reply_topic_allowed",
]

TD_TOPIC_PREFIX = "wot/td/"
#: The namespace of every action reply topic; no affordance topic may start with it.
REPLY_TOPIC_PREFIX = "wot-agents/replies/"
#: The largest request payload an agent accepts, as on HTTP and WebSocket (bytes).
MAX_PAYLOAD = 1024 * 1024


def reply_topic_allowed(topic: str) -> bool:
    """Whether an agent may publish a reply on ``topic``: one level under the reply namespace."""
    name = topic.removeprefix(REPLY_TOPIC_PREFIX)
    return (
        topic.startswith(REPLY_TOPIC_PREFIX)
        and 0 < len(name) <= 128
        and not any(char in name for char in "/+#\0")
    )


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> Broker:
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"an MQTT broker URL starts with mqtt:// or mqtts://, not {url!r}")
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883), tls)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"

    async def connect(
        self,
        stack: AsyncExitStack,
        *,
        username: str | None = None,
        password: str | None = None,
        identifier: str | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - it also configures the client's own operations
        max_in_flight: int = 1000,
        max_packet_size: int | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> Any:
        """An MQTT 5 client connected to this broker, disconnected when ``stack`` closes.

        ``max_packet_size`` asks the broker not to deliver larger packets (it drops them).
        ``tls_context`` (for ``mqtts``) may present a client certificate (mutual TLS).
        """
        aiomqtt = _import_aiomqtt()
        connect_properties = None
        if max_packet_size is not None:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            connect_properties.MaximumPacketSize = max_packet_size
        client = aiomqtt.Client(
            self.host,
            self.port,
            username=username,
            password=password,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            timeout=timeout,
            tls_params=aiomqtt.TLSParameters() if self.tls and tls_context is None else None,
            tls_context=tls_context if self.tls else None,
            # Without TCP_NODELAY each QoS 1 publish waits ~40 ms for its PUBACK (Nagle meeting
            # delayed ACKs): 88 ms against 0.6 ms per request/response measured on loopback.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            properties=connect_properties,
        )
        # Many requests in flight at once are normal here, not a warning sign.
        client.pending_calls_threshold = max_in_flight
        try:
            async with asyncio.timeout(timeout):
                await client.__aenter__()
        except TimeoutError:
            raise RequestTimeout(
                f"no CONNACK from the MQTT broker {self.url} in {timeout} s", href=self.url
            ) from None
        except aiomqtt.MqttError as exc:
            raise ConnectError(f"cannot connect to the MQTT broker {self.url}: {exc}", href=self.url) from exc

        async def disconnect(*exc_info: object) -> None:
            # A broker that went away never acknowledges DISCONNECT: do not wait for it forever.
            with contextlib.suppress(TimeoutError, aiomqtt.MqttError):
                async with asyncio.timeout(timeout):
                    await client.__aexit__(None, None, None)

        stack.push_async_exit(disconnect)
        return client


def _import_aiomqtt() -> Any:
    try:
        import aiomqtt
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ImportError("the MQTT binding needs aiomqtt: pip install 'wot-agents[mqtt]'") from None
    return aiomqtt


def publish_properties(**members: Any) -> Any:
    """MQTT 5 PUBLISH properties (``ResponseTopic``, ``CorrelationData``, ``UserProperty``...)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in members.items():
        setattr(properties, name, value)
    return properties


def form_topic(form: Form, *, subscribe: bool) -> str:
    """The topic (or filter) of a form: ``mqv:filter``/``mqv:topic``, else the href's path.

    The href path is how node-wot up to 0.8 writes topics; the binding template keeps them out
    of the URL, so the ``mqv:`` terms win when both are present.
    """
    topic = (form.mqtt_filter or form.mqtt_topic) if subscribe else (form.mqtt_topic or form.mqtt_filter)
    if topic:
        return topic
    path = urlsplit(form.href).path.lstrip("/")
    if not path:
        raise ValueError(f"the MQTT form {form.href!r} names no topic (mqv:topic, mqv:filter or a path)")
    return path
