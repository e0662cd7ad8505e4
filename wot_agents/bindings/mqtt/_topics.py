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
from collections.abc import Callable
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
    "PackedProperties",
    "Wire",
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


class Wire:
    """The hot path of one broker connection: paho's client, driven directly on the event loop.

    aiomqtt connects, subscribes and disconnects; requests, replies and their acknowledgements go
    through this instead, because aiomqtt's way costs more CPU than the rest of a request:
    a task and an ``asyncio.wait`` per message it hands out, an ``Event`` and a ``wait_for`` task
    per publish, and per packet written a thread-safe wake-up of the loop (a self-pipe write)
    plus adding and removing a writer on the socket. Here paho calls ``on_message`` for each
    message (on the loop, while reading; it must not raise), and everything queued while the
    loop runs one step is written in one go at its end. Reading is one ``recv`` of all that
    arrived, from which paho parses its packets (paho alone reads a packet with three ``recv``
    calls, and ends each read with one more that finds nothing). It reaches into aiomqtt's
    paho client (``_client``, ``_disconnected``), which aiomqtt 2.x keeps.
    """

    def __init__(self, client: Any, on_message: Callable[[Any], None]) -> None:
        self._client = client
        self._paho = client._client
        self._loop = asyncio.get_running_loop()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._flush_scheduled = False
        self._writer: int | None = None
        from paho.mqtt.client import topic_matches_sub

        #: Whether a topic matches a filter (``+`` and ``#`` wildcards).
        self.matches: Callable[[str, str], bool] = topic_matches_sub
        paho = self._paho
        aiomqtt_published = paho.on_publish
        aiomqtt_disconnected = paho.on_disconnect

        def published(paho_client: Any, userdata: Any, mid: int, *rest: Any) -> None:
            ack = self._acks.pop(mid, None)
            if ack is not None and not ack.done():
                ack.set_result(None)
            aiomqtt_published(paho_client, userdata, mid, *rest)

        def disconnected(*args: Any) -> None:
            self._fail_acks()
            aiomqtt_disconnected(*args)

        paho.on_publish = published
        paho.on_disconnect = disconnected
        paho.on_message = lambda _client, _userdata, message: on_message(message)
        paho.on_socket_register_write = self._register_write
        paho.on_socket_unregister_write = self._unregister_write
        #: What paho wrote in this loop step, sent in one go by ``_send``.
        self._out = bytearray()
        paho._sock_send = self._take
        #: What arrived and paho has not parsed yet; ``_eof`` once the broker closed.
        self._in = bytearray()
        self._eof = False
        paho._sock_recv = self._give
        sock = paho.socket()
        if sock is not None:  # aiomqtt's reader (paho reading the socket itself) makes way for ours
            self._loop.remove_reader(sock.fileno())
            self._loop.add_reader(sock.fileno(), self._read)

    def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool = False, properties: Any = None
    ) -> asyncio.Future[None] | None:
        """Queue one PUBLISH; the future (QoS 1/2 only) is done when the broker acknowledged it.

        Nothing needs to wait for that future: the message is sent at the end of this loop step.
        """
        info = self._paho.publish(topic, payload, qos, retain, properties)
        if info.rc:
            raise ConnectError(f"cannot publish to {topic!r}: MQTT error {info.rc}")
        if qos == 0 or info.is_published():
            return None
        ack: asyncio.Future[None] = self._loop.create_future()
        self._acks[info.mid] = ack
        return ack

    async def publish_acknowledged(
        self, topic: str, payload: bytes, *, qos: int, retain: bool = False, properties: Any = None
    ) -> None:
        """Publish and wait for the broker's acknowledgement (QoS 1/2): it paces the sender."""
        ack = self.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if ack is not None:
            await ack  # left by a timeout, it stays until the acknowledgement or the disconnection

    def _fail_acks(self) -> None:
        acks, self._acks = self._acks, {}
        for ack in acks.values():
            if not ack.done():
                ack.set_exception(ConnectError("lost the MQTT broker"))
                ack.exception()  # retrieved: nobody may be waiting for it

    def _read(self) -> None:
        """The socket is readable: take all that arrived, then let paho parse every packet in it."""
        sock = self._paho.socket()
        if sock is None:
            return
        try:
            while True:
                chunk = sock.recv(_READ_SIZE)
                if not chunk:
                    self._eof = True
                    break
                self._in += chunk
                # A TLS socket hands out one record a call; the rest waits decrypted in it.
                if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                    break
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except OSError:
            self._eof = True  # paho finds the connection lost and reports it as it always does
        try:
            while self._in:  # every packet that arrived, the last ones before a close included
                if self._paho.loop_read():
                    return  # paho has handled the error (and dropped the connection)
            if self._eof:
                self._paho.loop_read()  # paho reads b"" and reports the lost connection as always
        except Exception as exc:  # a broken connection: aiomqtt's message iteration ends
            self._lost(exc)

    def _give(self, size: int) -> bytes:
        """paho's ``_sock_recv``: up to ``size`` bytes of what ``_read`` took from the socket."""
        if not self._in:
            if self._eof:
                return b""  # paho: the connection is lost
            raise BlockingIOError
        data = bytes(self._in[:size])
        del self._in[:size]
        return data

    def _register_write(self, _client: Any, _userdata: Any, _sock: Any) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _unregister_write(self, _client: Any, _userdata: Any, _sock: Any) -> None:
        """paho has nothing left to write: what it wrote may still wait in ``_out``."""

    def _take(self, data: bytes | bytearray) -> int:
        """paho's ``_sock_send``: the packet joins the others written in this loop step."""
        if self._paho.socket() is None:
            raise ConnectionError("the MQTT connection is closed")
        self._out += data
        if data[0] & 0xF0 == _DISCONNECT:  # paho closes the socket right after: send it now
            self._send()
        return len(data)

    def _flush(self) -> None:
        self._flush_scheduled = False
        try:
            self._paho.loop_write()
        except Exception as exc:  # a broken connection: aiomqtt's message iteration ends
            self._lost(exc)
            return
        self._send()

    def _send(self) -> None:
        """One ``send`` for every packet queued since the last one (each ``send`` on a TCP
        socket costs more than building a packet); the rest when the socket has room again."""
        sock = self._paho.socket()
        if sock is None:
            self._out.clear()
        elif self._out:
            try:
                sent = sock.send(self._out)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                sent = 0
            except OSError as exc:
                self._out.clear()
                self._lost(exc)
            else:
                del self._out[:sent]
        if self._out and self._writer is None and sock is not None:
            self._writer = sock.fileno()
            self._loop.add_writer(self._writer, self._send)
        elif not self._out and self._writer is not None:
            self._loop.remove_writer(self._writer)
            self._writer = None

    def _lost(self, exc: BaseException) -> None:
        disconnected = self._client._disconnected
        if not disconnected.done():
            disconnected.set_exception(exc)


def _import_aiomqtt() -> Any:
    try:
        import aiomqtt
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ImportError("the MQTT binding needs aiomqtt: pip install 'wot-agents[mqtt]'") from None
    return aiomqtt


#: MQTT 5 property identifiers of the PUBLISH properties this binding sends (MQTT 5, 2.2.2.2).
_STRING_PROPERTIES = {"ContentType": 0x03, "ResponseTopic": 0x08}
_CORRELATION_DATA, _USER_PROPERTY = 0x09, 0x26
#: The MQTT control packet type of DISCONNECT (its first byte's high nibble).
_DISCONNECT = 0xE0
#: The most one read takes from the socket (what a loopback socket typically holds at once).
_READ_SIZE = 256 * 1024


def _utf8(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else bytes(value)
    return len(data).to_bytes(2, "big") + data


class PackedProperties:
    """MQTT 5 PUBLISH properties, packed once when made.

    paho asks its properties only for ``pack()`` when it writes a PUBLISH (and again if it
    resends one); its own ``Properties.pack()`` walks every property name MQTT 5 defines,
    which cost more than the rest of a publish.
    """

    __slots__ = ("_packed",)

    def __init__(self, packed: bytes) -> None:
        self._packed = packed

    def pack(self) -> bytes:
        return self._packed


def publish_properties(**members: Any) -> PackedProperties:
    """MQTT 5 PUBLISH properties: ``ContentType``, ``ResponseTopic``, ``CorrelationData``,
    ``UserProperty`` (a list of name/value pairs), packed for paho's ``publish``."""
    body = bytearray()
    for name, value in members.items():
        if name in _STRING_PROPERTIES:
            body.append(_STRING_PROPERTIES[name])
            body += _utf8(value)
        elif name == "CorrelationData":
            body.append(_CORRELATION_DATA)
            body += _utf8(value)
        elif name == "UserProperty":
            for key, item in value:
                body.append(_USER_PROPERTY)
                body += _utf8(key) + _utf8(item)
        else:
            raise ValueError(f"the MQTT binding does not send the PUBLISH property {name!r}")
    length, size = bytearray(), len(body)
    while True:  # the property length, a variable byte integer (MQTT 5, 1.5.5)
        size, digit = divmod(size, 128)
        length.append(digit | (0x80 if size else 0))
        if not size:
            break
    return PackedProperties(bytes(length + body))


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
