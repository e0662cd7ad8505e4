"""The LMOS WebSocket message envelope (LMOS communication protocol, "WebSocket Messages").

Every message carries ``thingID``, ``messageID`` (a UUIDv4), ``messageType`` and, to tie a
reply to its request, ``correlationID``; ``traceparent``/``tracestate`` pass through. The
specification's own examples spell the members both ``thingID`` and ``thingId``: we write the
table's spelling and read either.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from ..._json import loads_json
from ..._problem import ProblemDetails

__all__ = [
    "ENVELOPE",
    "REQUEST_TYPES",
    "correlation_of",
    "decode",
    "encode",
    "error_message",
    "member",
    "message",
    "now",
]

#: The envelope members, as written; ``member()`` also reads the ``...Id`` spelling.
ENVELOPE: Final = ("thingID", "messageID", "messageType", "correlationID", "traceparent", "tracestate")

#: Consumer -> Thing message types and the TD operation each performs.
REQUEST_TYPES: Final[dict[str, str]] = {
    "invokeAction": "invokeaction",
    "queryAction": "queryaction",
    "cancelAction": "cancelaction",
    "readProperty": "readproperty",
    "writeProperty": "writeproperty",
    "writeMultipleProperties": "writemultipleproperties",
    "observeProperty": "observeproperty",
    "unobserveProperty": "unobserveproperty",
    "subscribeEvent": "subscribeevent",
    "unsubscribeEvent": "unsubscribeevent",
    "subscribeAllEvents": "subscribeallevents",
    "unsubscribeAllEvents": "unsubscribeallevents",
}


def now() -> str:
    """An RFC 3339 / RFC 9557 date-time in UTC."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def member(data: dict[str, Any], name: str) -> Any:
    """Read an envelope member in either spelling (``correlationID`` or ``correlationId``)."""
    if name in data:
        return data[name]
    return data.get(name[:-2] + "Id") if name.endswith("ID") else None


def correlation_of(data: dict[str, Any]) -> str | None:
    """What a reply to ``data`` carries as ``correlationID``: its correlation, else its message id."""
    value = member(data, "correlationID") or member(data, "messageID")
    return value if isinstance(value, str) else None


def message(
    message_type: str,
    thing_id: str,
    *,
    correlation_id: str | None = None,
    trace: dict[str, Any] | None = None,
    **body: Any,
) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "thingID": thing_id,
        "messageID": str(uuid.uuid4()),
        "messageType": message_type,
    }
    if correlation_id is not None:
        envelope["correlationID"] = correlation_id
    for key in ("traceparent", "tracestate"):
        if trace and trace.get(key):
            envelope[key] = trace[key]
    envelope.update(body)
    return envelope


def error_message(thing_id: str, problem: ProblemDetails, *, correlation_id: str | None) -> dict[str, Any]:
    """An ``error`` message: the problem's RFC 7807 members with the status as a string, as the table says."""
    body = problem.to_dict()
    body["status"] = str(problem.status)
    body.setdefault("instance", f"urn:uuid:{uuid.uuid4()}")
    return message("error", thing_id, correlation_id=correlation_id, **body)


def encode(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False)


def decode(text: str | bytes) -> dict[str, Any]:
    """Parse one message; anything but a JSON object with a ``messageType`` is a ``ValueError``."""
    data = loads_json(text)  # the SDK's limits: deep or huge JSON is a ValueError too
    if not isinstance(data, dict) or not isinstance(data.get("messageType"), str):
        raise ValueError("an LMOS message is a JSON object with a string messageType")
    return data
