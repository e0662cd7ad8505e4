"""The WoT DNS-SD vocabulary (WoT Discovery, section 6.3) in one place.

Announcement names, the TXT keys and their rules, and the one record type both sides of mDNS share:
:class:`Announcement`, what an announcement says once it has been checked. Anything a stranger on the
LAN can put in a TXT record is checked here before it is used to build a URL.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from wot_agents import AnnouncementError

__all__ = [
    "DIRECTORY_SUBTYPE",
    "FETCHABLE_SCHEMES",
    "WOT_SERVICE",
    "Announcement",
    "Kind",
    "instance_label",
    "parse_txt",
    "revision_of",
    "sort_addresses",
    "txt_record",
]

#: Things and directories over TCP (HTTP, HTTPS, CoAP over TCP).
WOT_SERVICE = "_wot._tcp.local."
#: The subtype under which a Thing Description Directory also announces itself.
DIRECTORY_SUBTYPE = "_directory._sub._wot._tcp.local."

Kind = Literal["Thing", "Directory"]
_KINDS: dict[str, Kind] = {"Thing": "Thing", "Directory": "Directory"}
#: Schemes the spec allows in TXT ``scheme`` for ``_wot._tcp``; only the HTTP ones can be fetched here.
_TCP_SCHEMES = frozenset({"http", "https", "coap+tcp", "coaps+tcp"})
FETCHABLE_SCHEMES = frozenset({"http", "https"})

#: Instance names are at most 63 bytes; room is kept for the "-N" suffix of conflict renaming.
_MAX_LABEL_BYTES = 56
_MAX_PATH_CHARS = 1024
# An absolute path: one slash then path characters (RFC 3986 pchar, "/" and "%XX"); no authority
# ("//host"), no query, no fragment, no spaces: the path cannot move the request to another host.
_PATH = re.compile(r"/(?!/)[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def instance_label(title: str) -> str:
    """A DNS-SD instance name from a TD title: no control characters, at most 56 UTF-8 bytes."""
    label = _CONTROL.sub(" ", title).strip() or "WoT Thing"
    encoded = label.encode()[:_MAX_LABEL_BYTES]
    return encoded.decode(errors="ignore").rstrip() or "WoT Thing"


def revision_of(document: Mapping[str, Any] | str | bytes) -> str:
    """A short digest of a TD, announced in TXT so browsers see a changed TD without polling."""
    data = document if isinstance(document, str | bytes) else json.dumps(document, sort_keys=True)
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:12]


def txt_record(*, td_path: str, kind: Kind, scheme: str, revision: str | None = None) -> dict[str, str]:
    """The TXT properties of a WoT service, ``td`` first as the spec asks."""
    _check_path(td_path)
    if scheme not in _TCP_SCHEMES:
        raise AnnouncementError(f"scheme {scheme!r} is not one of {sorted(_TCP_SCHEMES)}")
    txt = {"td": td_path, "type": kind, "scheme": scheme}
    if revision:
        txt["rev"] = revision
    return txt


def _check_path(path: str) -> None:
    if len(path) > _MAX_PATH_CHARS or not _PATH.fullmatch(path):
        raise AnnouncementError(f"td {path[:80]!r} is not an absolute path on the announcing host")


@dataclass(frozen=True, slots=True)
class Announcement:
    """One checked WoT DNS-SD announcement: where its TD is, and what it is."""

    name: str
    """The full service instance name, e.g. ``Weather._wot._tcp.local.``; unique on the link."""
    kind: Kind
    scheme: str
    td_path: str
    server: str
    port: int
    addresses: tuple[str, ...]
    """IP addresses of ``server``: IPv4 first, then IPv6 (link-local ones with ``%scope``)."""
    revision: str | None = None

    @property
    def instance(self) -> str:
        """The user-visible part of :attr:`name`."""
        return self.name[: -len(WOT_SERVICE) - 1] if self.name.endswith("." + WOT_SERVICE) else self.name

    def td_urls(self) -> list[str]:
        """The TD's URL at each announced address, the order to try them in.

        Built from the announced address, port and path only, never from a name to resolve, so a
        fetch goes nowhere but the host that answered for this service.
        """
        return [f"{self.scheme}://{_url_host(ip)}:{self.port}{self.td_path}" for ip in self.addresses]


def _url_host(address: str) -> str:
    if ":" not in address:
        return address
    # RFC 6874: the zone of a link-local address is written %25zone inside the brackets.
    return "[" + address.replace("%", "%25", 1) + "]"


def parse_txt(properties: Mapping[str, str | None]) -> tuple[str, Kind, str, str | None]:
    """``(td_path, kind, scheme, revision)`` from decoded TXT properties, with the spec's defaults."""
    td_path = properties.get("td")
    if not td_path:
        raise AnnouncementError("the TXT record has no 'td' key")
    _check_path(td_path)
    raw_kind = properties.get("type") or "Thing"
    kind = _KINDS.get(raw_kind)
    if kind is None:
        raise AnnouncementError(f"TXT type {raw_kind[:40]!r} is neither 'Thing' nor 'Directory'")
    scheme = (properties.get("scheme") or "http").lower()
    if scheme not in _TCP_SCHEMES:
        raise AnnouncementError(f"TXT scheme {scheme[:40]!r} is not one of {sorted(_TCP_SCHEMES)}")
    return td_path, kind, scheme, properties.get("rev")


def sort_addresses(addresses: list[str]) -> tuple[str, ...]:
    """IPv4, then global IPv6, then link-local IPv6: the order that needs the least luck to connect."""

    def rank(address: str) -> int:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        return 0 if ip.version == 4 else 2 if ip.is_link_local else 1

    return tuple(sorted(dict.fromkeys(addresses), key=rank))
