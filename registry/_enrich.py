"""Turning a submitted description into the stored Enriched TD, and the JSON Merge Patch helpers.

The directory owns the ``registration`` object (WoT Discovery 7.3.1.1): ``created`` and
``modified`` are set here, ``expires`` is computed from ``ttl`` when one is given (a client's
``expires`` is then ignored), and ``retrieved`` is added on the way out. The discovery context is
added to ``@context`` so the registration terms have a meaning.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from wot_agents import TD10_CONTEXT, TD_CONTEXT

__all__ = [
    "DISCOVERY_CONTEXT",
    "TD10_CONTEXT",
    "anonymous_id",
    "enrich",
    "merge_diff",
    "merge_patch",
    "retrieved_tail",
    "rfc3339",
]

DISCOVERY_CONTEXT = "https://www.w3.org/2022/wot/discovery"
_DISCOVERY_SPELLINGS = {DISCOVERY_CONTEXT, DISCOVERY_CONTEXT + "/"}


def rfc3339(epoch: float) -> str:
    """An RFC 3339 date-time with an explicit offset (``Z``), millisecond precision."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def anonymous_id() -> str:
    """A local id for an Anonymous TD: a UUID version 4 as a URN (7.3.1.3)."""
    return f"urn:uuid:{uuid.uuid4()}"


def with_discovery_context(context: Any) -> Any:
    entries = context if isinstance(context, list) else [context]
    if any(isinstance(entry, str) and entry in _DISCOVERY_SPELLINGS for entry in entries):
        return context
    # The TD context(s) stay in front: TD 1.1 (5.3.1.1) wants a TD 1.0-compatible array to start
    # with the 1.0 URI *and* have the 1.1 URI second, so the discovery context goes after both.
    head = 2 if entries[:2] == [TD10_CONTEXT, TD_CONTEXT] else 1
    return [*entries[:head], DISCOVERY_CONTEXT, *entries[head:]]


class RegistrationError(ValueError):
    """The registration information asks for something this directory refuses (e.g. ttl too long)."""


def enrich(
    td: dict[str, Any], *, now: float, created: float | None, max_ttl: float | None
) -> tuple[dict[str, Any], float | None]:
    """The Enriched TD to store and its absolute expiry (epoch seconds, or None).

    ``created`` is the creation time of the description being replaced, None for a new one.
    """
    registration = td.get("registration")
    registration = dict(registration) if isinstance(registration, dict) else {}
    ttl = registration.get("ttl")
    expires: float | None
    if isinstance(ttl, int | float) and not isinstance(ttl, bool):
        if ttl <= 0:
            raise RegistrationError(f"registration.ttl must be a positive number of seconds, not {ttl}")
        if max_ttl is not None and ttl > max_ttl:
            raise RegistrationError(
                f"registration.ttl {ttl} s is longer than this directory's maximum of {max_ttl:g} s"
            )
        expires = now + ttl
    else:
        expires = parse_time(registration.get("expires"))
        if expires is not None and expires <= now:
            # Stored, it would be gone for readers at once: a 201 would only mislead the client.
            raise RegistrationError(f"registration.expires {registration['expires']} is in the past")
        if expires is not None and max_ttl is not None and expires - now > max_ttl:
            raise RegistrationError(
                f"registration.expires is more than this directory's maximum of {max_ttl:g} s away"
            )
    out = {key: value for key, value in td.items() if key != "registration"}
    out["@context"] = with_discovery_context(td.get("@context"))
    reg: dict[str, Any] = {
        "created": rfc3339(created if created is not None else now),
        "modified": rfc3339(now),
    }
    if expires is not None:
        reg["expires"] = rfc3339(expires)
    if "ttl" in registration:
        reg["ttl"] = ttl
    out["registration"] = reg  # last member: retrieved_tail() relies on it
    return out, expires


def retrieved_tail(now: float) -> bytes:
    """What replaces the last two bytes of a stored TD to set ``registration.retrieved``.

    :func:`enrich` writes ``registration`` as the last member, so the stored text ends with the
    two closing braces of ``registration`` and of the TD: a reader never parses it again, and a
    listing computes this once for all its members.
    """
    return b',"retrieved":"' + rfc3339(now).encode() + b'"}}'


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON Merge Patch: ``patch`` applied to ``target`` (neither is modified)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def merge_diff(old: Any, new: Any) -> Any:
    """The RFC 7396 merge patch that turns ``old`` into ``new`` (the ``diff=true`` update event)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_diff(old[key], value) if isinstance(value, dict) else value
    return patch
