"""Discovery as services of a served agent: ``agent.serve(http=..., services=[announcement()])``.

A service starts after the bindings (the TD URL and ports are known) and stops before them, so
the goodbye packets and the directory deregistration go out while the agent still answers.
Both follow the running agent's description: a change re-announces and re-registers it.
``serve(announce=True, directory=URL)`` is shorthand for these two.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from wot_agents.bindings import RunningAgent, Service, WebServer

from ._announce import Announcer
from ._registration import Registration

__all__ = ["announcement", "registration"]


def announcement(*, interfaces: Sequence[str] | None = None) -> Service:
    """Announce the agent by mDNS / DNS-SD while it is served (needs the HTTP binding).

    Without ``interfaces``, mDNS runs where the agent listens: only on loopback for an agent
    bound to 127.0.0.1 (nothing else could fetch its TD), on every interface for 0.0.0.0 or ::,
    else on the bound address.
    """

    @asynccontextmanager
    async def announced(running: RunningAgent) -> AsyncIterator[Announcer]:
        web = next((server for server in running.servers if isinstance(server, WebServer)), None)
        if running.td_url is None or web is None:
            raise ValueError("announcing needs the HTTP binding: browsers fetch the TD over HTTP")
        url = urlsplit(running.td_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        announcer = Announcer(
            running.description,
            port=port,
            td_path=url.path or "/",
            scheme=url.scheme,
            interfaces=interfaces,
            listen_host=web.host,
        )
        async with announcer:
            stop = running.on_description_change(announcer.update)
            try:
                yield announcer
            finally:
                stop()

    return announced


def registration(
    directory: str | None = None,
    *,
    token: str | None = None,
    ttl: float = 60.0,
    interfaces: Sequence[str] | None = None,
) -> Service:
    """Keep the agent registered in the directory at ``directory`` while it is served; without
    a URL, in the directory announced by DNS-SD (on ``interfaces``)."""

    @asynccontextmanager
    async def registered(running: RunningAgent) -> AsyncIterator[Registration]:
        kept = Registration(directory, running.description, token=token, ttl=ttl, interfaces=interfaces)
        async with kept:
            stop = running.on_description_change(kept.update)
            try:
                yield kept
            finally:
                stop()

    return registered
