"""MQTT broker addresses and topic layout, shared by the MQTT server and client.

Topics follow the layout Eclipse Thingweb node-wot uses, so either side can talk to the
other: ``{root}/properties/{name}`` (retained values), ``{root}/properties/{name}/writeproperty``,
``{root}/actions/{name}``, ``{root}/events/{name}``. The TD itself is retained on
``wot/td/{root}`` so an MQTT-only client finds every agent on a broker with ``wot/td/+``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ..._model import Form

__all__ = ["TD_TOPIC_PREFIX", "Broker", "form_topic"]

TD_TOPIC_PREFIX = "wot/td/"


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
