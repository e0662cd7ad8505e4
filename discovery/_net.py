"""Which interfaces mDNS runs on, and which addresses a host announces.

``interfaces=None`` means every interface, IPv4 and IPv6, as a LAN user expects; a list of
addresses confines mDNS to them (tests and benchmarks pass ``["127.0.0.1"]`` so no packet leaves
the machine).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import ifaddr
from zeroconf import InterfaceChoice, IPVersion
from zeroconf.asyncio import AsyncZeroconf

__all__ = ["announced_addresses", "interfaces_for", "open_zeroconf"]


def open_zeroconf(interfaces: Sequence[str] | None = None) -> AsyncZeroconf:
    """An AsyncZeroconf on the running loop (no thread of its own) for these interfaces."""
    if interfaces is not None:
        return AsyncZeroconf(interfaces=list(interfaces))
    chosen = _lan_interfaces()
    if not chosen:  # a machine with loopback only
        return AsyncZeroconf(interfaces=InterfaceChoice.All, ip_version=IPVersion.V4Only)
    # IPv4 loopback too: an agent serving on 127.0.0.1 announces there only, and multicast sent on
    # `lo` reaches only the sockets that joined the group on `lo`. Without it a browser started
    # first never hears such an agent arrive or say goodbye (it found it only by asking).
    chosen = [*chosen, "127.0.0.1"]
    has_v6 = any(isinstance(choice, int) for choice in chosen)
    return AsyncZeroconf(interfaces=chosen, ip_version=IPVersion.All if has_v6 else IPVersion.V4Only)


def _lan_interfaces() -> list[str | int]:
    """IPv4 addresses and IPv6 interface indexes of every interface but loopback (IPv6 multicast
    on ``lo`` fails with ENETUNREACH, which zeroconf's default choice would log on every start)."""
    chosen: list[str | int] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                if not ipaddress.ip_address(ip.ip).is_loopback:
                    chosen.append(ip.ip)
            elif adapter.index is not None and not ipaddress.ip_address(ip.ip[0]).is_loopback:
                chosen.append(adapter.index)
    return list(dict.fromkeys(chosen))


def announced_addresses(interfaces: Sequence[str] | None = None) -> list[str]:
    """The addresses to put in A/AAAA records: those of ``interfaces``, else of every non-loopback
    interface (loopback only when there is nothing else)."""
    if interfaces is not None:
        return [address for address in interfaces if _is_ip(address)]
    found: list[str] = []
    loopback: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            (loopback if ipaddress.ip_address(text).is_loopback else found).append(text)
    return found or loopback


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def interfaces_for(listen_host: str) -> list[str] | None:
    """Where to run mDNS for a server listening on ``listen_host``: only on loopback for
    127.0.0.1 (nothing else could reach it), everywhere for 0.0.0.0, :: or a host name, else on
    that address."""
    if listen_host == "localhost":
        return ["127.0.0.1"]
    try:
        ip = ipaddress.ip_address(listen_host)
    except ValueError:  # a host name: it may resolve to any interface
        return None
    if ip.is_unspecified:
        return None
    return ["127.0.0.1"] if ip.is_loopback else [listen_host]
