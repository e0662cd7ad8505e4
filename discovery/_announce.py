"""Announcing a Thing or a directory on the LAN with mDNS / DNS-SD (WoT Discovery 6.3).

One :class:`Announcer` is one service instance ``<title>._wot._tcp.local.``: probed first so two
agents with the same title end up with distinct names (RFC 6762 8.1, renamed ``<title>-2``),
announced with A and AAAA records of the host, re-announced when the TD changes (its revision is in
TXT ``rev``, so browsers refetch), and withdrawn with goodbye packets on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import secrets
import socket
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

from zeroconf import DNSOutgoing, DNSQuestion, ServiceInfo, Zeroconf  # type: ignore[attr-defined]
from zeroconf.asyncio import AsyncZeroconf

from wot_agents import DiscoveryError

from ._dnssd import DIRECTORY_SUBTYPE, WOT_SERVICE, Kind, instance_label, revision_of, txt_record
from ._document import Description, as_document
from ._lifecycle import Lifecycle
from ._net import announced_addresses, interfaces_for, open_zeroconf

__all__ = ["Announcer"]

log = logging.getLogger(__name__)

_PROBE_INTERVAL = 0.25  # RFC 6762 8.1
_MAX_RENAMES = 100
_DNS_QUERY, _DNS_TYPE_PTR, _DNS_CLASS_IN = 0x0000, 12, 1  # RFC 1035 4.1.1, 3.2.2, 3.2.4


class Announcer(Lifecycle):
    """Announces one TD served at ``scheme://<this host>:port/td_path`` for as long as it is open.

    ``zeroconf`` lets many announcers (and browsers) share one mDNS responder; without it the
    announcer opens its own on ``interfaces`` and closes it again. Without ``interfaces``, the
    server's ``listen_host`` decides (see :func:`interfaces_for`): an agent listening on
    127.0.0.1 is announced on loopback only. ``addresses`` default to those of the interfaces.
    """

    def __init__(
        self,
        description: Description,
        *,
        port: int,
        td_path: str = "/.well-known/wot",
        scheme: str = "http",
        kind: Kind | None = None,
        addresses: Sequence[str] | None = None,
        zeroconf: AsyncZeroconf | None = None,
        interfaces: Sequence[str] | None = None,
        listen_host: str | None = None,
    ) -> None:
        if interfaces is None and listen_host is not None:
            interfaces = interfaces_for(listen_host)
        document = as_document(description)
        self._kind: Kind = kind or ("Directory" if "ThingDirectory" in _types(document) else "Thing")
        revision = revision_of(document)
        self._txt = txt_record(td_path=td_path, kind=self._kind, scheme=scheme, revision=revision)
        self._label = instance_label(str(document.get("title") or "WoT Thing"))
        self._port = port
        self._addresses = list(addresses) if addresses is not None else announced_addresses(interfaces)
        self._interfaces = interfaces
        self._zc = zeroconf
        self._owns_zc = zeroconf is None
        self._info: ServiceInfo | None = None
        self._alias: ServiceInfo | None = None
        self._broadcasts: set[asyncio.Future[Any]] = set()
        self._closed = False

    @property
    def name(self) -> str | None:
        """The announced instance name once started; differs from the title after a conflict."""
        return self._info.name if self._info else None

    @property
    def kind(self) -> Kind:
        return self._kind

    async def start(self) -> None:
        if self._info is not None:
            return
        if self._zc is None:
            self._zc = open_zeroconf(self._interfaces)
        info = self._service_info(f"{self._label}.{WOT_SERVICE}", WOT_SERVICE, _server_name())
        try:
            await _probe(self._zc.zeroconf, info, self._label)
            # Probed above already, so zeroconf registers and announces at once.
            self._track(await self._zc.async_register_service(info, cooperating_responders=True))
        except BaseException:
            await self._close_zeroconf()
            raise
        self._info = info
        if self._kind == "Directory":
            self._publish_alias()
        log.info("announced %s at port %d (%s)", info.name, self._port, ", ".join(self._addresses))

    async def update(self, description: Description) -> None:
        """Re-announce with the revision of a changed TD; a no-op when the TD did not change."""
        revision = revision_of(as_document(description))
        if self._info is None or self._zc is None or self._txt.get("rev") == revision:
            return
        self._txt = {**self._txt, "rev": revision}
        info = self._service_info(self._info.name, WOT_SERVICE, self._info.server)
        self._track(await self._zc.async_update_service(info))
        self._info = info
        if self._alias is not None:
            self._publish_alias()

    async def aclose(self) -> None:
        """Send goodbye packets (TTL 0) so browsers drop the service at once; idempotent."""
        if self._closed:
            return
        self._closed = True
        for pending in self._broadcasts:
            pending.cancel()
        info, self._info = self._info, None
        if info is not None and self._zc is not None and not self._zc.zeroconf.done:
            self._withdraw_alias()
            with contextlib.suppress(Exception):
                await (await self._zc.async_unregister_service(info))
        await self._close_zeroconf()

    def _service_info(self, name: str, type_: str, server: str | None) -> ServiceInfo:
        return ServiceInfo(
            type_,
            name,
            port=self._port,
            properties=self._txt,
            server=server,
            parsed_addresses=self._addresses,
        )

    def _track(self, broadcast: Awaitable[Any]) -> None:
        future = asyncio.ensure_future(broadcast)
        self._broadcasts.add(future)
        future.add_done_callback(self._broadcasts.discard)

    # python-zeroconf cannot give one instance a second PTR under a subtype (its issues #109, #1287).
    # The alias is a ServiceInfo of the same instance typed as the subtype, put into the responder's
    # index by type only: queries for _directory._sub._wot._tcp are answered with a PTR to the same
    # instance name, and the instance itself is still probed and withdrawn as one service.
    def _publish_alias(self) -> None:
        assert self._zc is not None and self._info is not None
        self._withdraw_alias(goodbye=False)
        alias = self._service_info(self._info.name, DIRECTORY_SUBTYPE, self._info.server)
        self._zc.zeroconf.registry.types.setdefault(DIRECTORY_SUBTYPE, {})[alias.key] = alias
        self._alias = alias
        self._zc.zeroconf.async_send(self._zc.zeroconf.generate_service_broadcast(alias, None))

    def _withdraw_alias(self, *, goodbye: bool = True) -> None:
        alias, self._alias = self._alias, None
        if alias is None or self._zc is None:
            return
        index = self._zc.zeroconf.registry.types
        bucket = index.get(DIRECTORY_SUBTYPE, {})
        bucket.pop(alias.key, None)
        if not bucket:
            index.pop(DIRECTORY_SUBTYPE, None)
        if goodbye:
            self._zc.zeroconf.async_send(self._zc.zeroconf.generate_service_broadcast(alias, 0, False))

    async def _close_zeroconf(self) -> None:
        zc, self._zc = self._zc, None
        if zc is not None and self._owns_zc:
            await zc.async_close()


async def _probe(zc: Zeroconf, info: ServiceInfo, label: str) -> None:
    """Claim a unique instance name with RFC 6762 8.1 probing, renaming to ``label-N`` on conflict.

    zeroconf's own probing spaces its three probes 500 ms apart (~1.2 s before the first
    announcement); the RFC's 250 ms gets an agent onto the LAN in 0.75-1 s, which is what lets a
    browser see it within a second of start-up (bench/discovery.py).
    """
    await zc.async_wait_for_start()
    await asyncio.sleep(random.uniform(0, _PROBE_INTERVAL))  # desynchronise agents started together
    suffix, probes = 1, 0
    while True:
        if zc.cache.current_entry_with_name_and_alias(info.type, info.name):
            suffix += 1
            if suffix > _MAX_RENAMES:
                raise DiscoveryError(f"no free instance name for {label!r} after {_MAX_RENAMES} tries")
            info.name = f"{label}-{suffix}.{info.type}"
            probes = 0
        elif probes == 3:
            return
        else:
            zc.async_send(_probe_query(info))
            probes += 1
            await asyncio.sleep(_PROBE_INTERVAL)


def _probe_query(info: ServiceInfo) -> DNSOutgoing:
    # A QM question, where RFC 6762 8.1 says QU "SHOULD": a unicast answer reaches only one of the
    # mDNS stacks sharing port 5353 on a host (SO_REUSEPORT), so a second agent process on the same
    # machine would miss the conflict. Probes are answered by multicast at once either way.
    out = DNSOutgoing(_DNS_QUERY)
    out.add_question(DNSQuestion(info.type, _DNS_TYPE_PTR, _DNS_CLASS_IN))
    out.add_authorative_answer(info.dns_pointer())
    return out


def _types(document: Mapping[str, Any]) -> list[str]:
    types = document.get("@type") or []
    return [types] if isinstance(types, str) else [t for t in types if isinstance(t, str)]


def _server_name() -> str:
    """A host name of its own per announcer: agents in other network namespaces or containers of
    the same machine share the kernel's host name but not its addresses."""
    host = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname()).strip("-")[:40] or "wot"
    return f"{host}-{secrets.token_hex(3)}.local."
