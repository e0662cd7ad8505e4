"""The forms vocabulary every binding shares: operation types, their defaults, protocol terms.

One table per concept, read by the servers (to write forms) and by the consumer (to read forms
written by anyone): TD 1.1 default ``op`` values, the HTTP binding template's default
``htv:methodName`` per operation, the MQTT binding template's default ``mqv:controlPacket``
per operation, and the subprotocol names in use.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

import orjson

from .._agent import AffordanceKind
from .._errors import DescriptionError, PayloadError
from .._json import loads_json
from .._model import Form
from .._problem import HTTPProblem

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_OPS",
    "HTTP_METHODS",
    "LMOS_SUBPROTOCOL",
    "MAX_REPLY",
    "MQTT_CONTROL_PACKETS",
    "SSE_SUBPROTOCOL",
    "STREAM_OPS",
    "Kind",
    "Op",
    "decode_payload",
    "decode_request",
    "encode_payload",
    "form_ops",
    "http_method",
    "mqtt_control_packet",
    "mqtt_qos",
]

#: The three kinds of interaction affordance (one definition, the Agent builder's).
Kind = AffordanceKind

Op = Literal[
    "readproperty",
    "writeproperty",
    "observeproperty",
    "unobserveproperty",
    "invokeaction",
    "queryaction",
    "cancelaction",
    "subscribeevent",
    "unsubscribeevent",
    "readallproperties",
    "writeallproperties",
    "readmultipleproperties",
    "writemultipleproperties",
    "observeallproperties",
    "unobserveallproperties",
    "queryallactions",
    "subscribeallevents",
    "unsubscribeallevents",
]

#: The largest reply (body, SSE event, WebSocket message, MQTT packet) a consumer reads by
#: default: far above any sane payload, far below what would hurt (consume(max_reply=...)).
MAX_REPLY: Final = 16 * 1024 * 1024
#: The JSON content type of every payload the bindings write (TD 1.1 default too).
CONTENT_TYPE: Final = "application/json"
#: Server-Sent Events, the subprotocol of HTTP streams (HTTP binding template).
SSE_SUBPROTOCOL: Final = "sse"
#: The LMOS WebSocket subprotocol (LMOS WebSocket binding).
LMOS_SUBPROTOCOL: Final = "lmosprotocol"

#: TD 1.1 section 5.3.4.2: the ``op`` of a form that has none, by affordance kind.
DEFAULT_OPS: Final[dict[Kind, tuple[Op, ...]]] = {
    "property": ("readproperty", "writeproperty"),
    "action": ("invokeaction",),
    "event": ("subscribeevent", "unsubscribeevent"),
}

#: Operations answered by a stream of values rather than one reply.
STREAM_OPS: Final = frozenset(
    {"observeproperty", "subscribeevent", "observeallproperties", "subscribeallevents"}
)

#: HTTP binding template, "HTTP Default Vocabulary Terms", plus the methods the template's
#: sequences use for observation, subscription and action status.
HTTP_METHODS: Final[dict[str, str]] = {
    "readproperty": "GET",
    "writeproperty": "PUT",
    "observeproperty": "GET",
    "unobserveproperty": "DELETE",
    "invokeaction": "POST",
    "queryaction": "GET",
    "cancelaction": "DELETE",
    "subscribeevent": "GET",
    "unsubscribeevent": "DELETE",
    "readallproperties": "GET",
    "writeallproperties": "PUT",
    "readmultipleproperties": "GET",
    "writemultipleproperties": "PUT",
}

#: MQTT binding template, "Default mappings": which control packet performs which operation.
MQTT_CONTROL_PACKETS: Final[dict[str, str]] = {
    "readproperty": "mqv:subscribe",
    "observeproperty": "mqv:subscribe",
    "unobserveproperty": "mqv:unsubscribe",
    "writeproperty": "mqv:publish",
    "invokeaction": "mqv:publish",
    "subscribeevent": "mqv:subscribe",
    "unsubscribeevent": "mqv:unsubscribe",
    "readallproperties": "mqv:subscribe",
    "observeallproperties": "mqv:subscribe",
    "unobserveallproperties": "mqv:unsubscribe",
}


def encode_payload(value: Any) -> bytes:
    """A value as the bindings send it (``CONTENT_TYPE``), in UTF-8.

    orjson writes it (~15x faster than ``json``: every request and reply of every binding goes
    through here); what orjson refuses (an integer beyond 64 bits, a key that is not a string)
    is written by ``json`` as before. NaN and the infinities, which JSON has no form for, become
    ``null`` (``json`` wrote ``NaN``, which JSON parsers reject).
    """
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False).encode()


def decode_payload(raw: bytes | bytearray | None) -> Any:
    """A received payload: JSON when it is JSON, else its text; nothing is ``None``.

    JSON beyond the SDK's limits (nesting, number length) is a ``PayloadError``, not a crash.
    """
    data = bytes(raw or b"")
    if not data.strip():
        return None
    try:
        return loads_json(data, max_bytes=len(data))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return data.decode(errors="replace")
    except DescriptionError as exc:
        raise PayloadError(f"unusable JSON payload: {exc}") from None


def decode_request(raw: bytes | bytearray | None, content_type: str | None) -> Any:
    """A request payload as every server takes it: nothing is ``None``, anything else JSON.

    The forms declare ``CONTENT_TYPE``: a payload declared as something else is refused (415),
    not parsed anyway; one that is not JSON, or JSON beyond the SDK's limits (nesting, number
    length), is bad input (400). Raises ``HTTPProblem``.
    """
    data = bytes(raw or b"")
    if not data.strip():
        return None
    media_type = (content_type or CONTENT_TYPE).partition(";")[0].strip().lower()
    if media_type != CONTENT_TYPE:
        raise HTTPProblem(415, f"the payload is declared {content_type!r}; the forms say {CONTENT_TYPE}")
    try:
        return loads_json(data, max_bytes=len(data))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HTTPProblem(400, f"the payload is not JSON: {exc}") from None
    except DescriptionError as exc:
        raise HTTPProblem(400, f"the payload is not usable JSON: {exc}") from None


def form_ops(form: Form, kind: Kind | None) -> list[str]:
    """The operations a form performs: its ``op``, or the TD default for its affordance kind."""
    if form.op is not None:
        return form.ops
    return list(DEFAULT_OPS[kind]) if kind else []


def http_method(form: Form, op: str) -> str:
    """The HTTP method of ``op`` on ``form``: ``htv:methodName`` when given, else the default."""
    if form.method_name:
        return form.method_name.upper()
    try:
        return HTTP_METHODS[op]
    except KeyError:
        raise ValueError(f"the HTTP binding defines no default method for {op!r}") from None


def mqtt_control_packet(form: Form, op: str) -> str:
    """``mqv:controlPacket`` of the form, else the binding template's default for ``op``."""
    packet = form.mqtt_control_packet or MQTT_CONTROL_PACKETS.get(op, "mqv:publish")
    return packet if packet.startswith("mqv:") else f"mqv:{packet}"


def mqtt_qos(form: Form) -> int:
    """``mqv:qos`` is a string in the binding template ("0", "1", "2"); absent means 0."""
    if form.mqtt_qos is None:
        return 0
    qos = int(form.mqtt_qos)
    if qos not in (0, 1, 2):
        raise ValueError(f"mqv:qos must be 0, 1 or 2, not {form.mqtt_qos!r}")
    return qos
