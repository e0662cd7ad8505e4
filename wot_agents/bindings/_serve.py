"""``serve()``: run an agent on several bindings at once, as one unit.

Every server starts inside one :class:`~contextlib.AsyncExitStack`, so a server that fails
to start stops the ones already started, and leaving stops them all in reverse order. The
result, :class:`RunningAgent`, knows every base URL and the current description, and tells
listeners when the description changes (the MQTT server republishes it; discovery re-announces).
"""

from __future__ import annotations

import asyncio
import functools
import re
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

from .._model import TD10_CONTEXT, AgentDescription
from ..trust import AgentIdentity, sign
from ..trust._groups import AccessPolicy, describe_access
from ..trust._tls import TlsConfig
from ._interfaces import BindingServer, ExposedAgent, ServeContext
from ._mtls import CertificateAuth
from ._security import ServerSecurity, security_definitions
from ._web import WebBinding, WebServer

__all__ = ["RunningAgent", "Service", "Serving", "serve", "slugify"]

#: Something started after the bindings and stopped before them, given the running agent
#: (e.g. an mDNS announcement or a directory registration).
Service = Callable[["RunningAgent"], AbstractAsyncContextManager[Any]]
Listener = Callable[[AgentDescription], Awaitable[None] | None]


def slugify(text: str) -> str:
    """A path- and topic-safe name: lower case letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "agent"


class RunningAgent:
    """An agent being served: where it is reachable and what its TD says right now."""

    def __init__(
        self,
        agent: ExposedAgent,
        servers: Sequence[BindingServer],
        security: Sequence[ServerSecurity],
        slug: str,
        *,
        td10_compatible: bool = False,
        identity: AgentIdentity | None = None,
        access: AccessPolicy | None = None,
    ) -> None:
        self.agent = agent
        self.access = access
        self.td10_compatible = td10_compatible
        #: Who signs the description (None: unsigned); ``serve(did_web=True)`` gives it a did:web.
        self.identity = identity
        self.servers = tuple(servers)
        self.security = tuple(security)
        self.slug = slug
        self._description: AgentDescription | None = None
        self._listeners: list[Listener] = []
        first = agent.description()
        self.context = ServeContext(
            agent=agent,
            slug=slug,
            thing_id=first.id or f"urn:wot-agents:{slug}",
            describe=lambda: self.description,
            security=self.security,
            did_document=self.did_document,
            access=access,
        )

    @property
    def description(self) -> AgentDescription:
        """The TD with the forms of every running binding (built once, rebuilt by :meth:`refresh`)."""
        if self._description is None:
            definitions, required = security_definitions(self.security)
            description = self.agent.description(
                forms=list(self.servers), security_definitions=definitions, security=required
            )
            if self.td10_compatible:
                description = _for_td10_consumers(description)
            if self.access is not None:
                description = AgentDescription.from_dict(describe_access(description.to_dict(), self.access))
            if self.identity is not None:  # last: the signature covers everything above
                description = AgentDescription.from_dict(sign(description, self.identity))
            self._description = description
        return self._description

    def did_document(self) -> dict[str, Any] | None:
        """The agent's DID document when it goes by a did:web (served by its web server)."""
        if self.identity is None or self.identity.web is None:
            return None
        return self.identity.did_document(td_url=self.td_url)

    @property
    def base_urls(self) -> dict[str, str]:
        """Base URL per binding kind: ``http``, ``ws``, ``mqtt`` (only those being served)."""
        urls: dict[str, str] = {}
        for server in self.servers:
            for kind, url in server.urls().items():
                urls.setdefault(kind, url)
        return urls

    @property
    def td_url(self) -> str | None:
        """Where the TD is served over HTTP, if a web server runs."""
        for server in self.servers:
            if isinstance(server, WebServer) and server.base_url:
                return f"{server.base_url}/{self.slug}"
        return None

    def on_description_change(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(description)`` after each change; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def refresh(self) -> AgentDescription:
        """Rebuild the description (after the agent changed) and tell the servers and listeners."""
        self._description = None
        description = self.description
        for server in self.servers:
            await server.description_changed(description)
        for listener in list(self._listeners):
            result = listener(description)
            if result is not None:
                await result
        return description


_RUNNING_MEMBERS = frozenset(name for name in vars(RunningAgent) if not name.startswith("_")) | {
    "agent",
    "servers",
    "security",
    "slug",
    "context",
    "td10_compatible",
}


class Serving(Coroutine[Any, Any, None]):
    """What ``serve()`` returns: ``async with`` it to get a :class:`RunningAgent`, or ``await`` it
    (or ``asyncio.run`` it) to serve until Ctrl-C, SIGTERM or cancellation."""

    def __init__(
        self,
        agent: ExposedAgent,
        servers: Sequence[BindingServer],
        security: Sequence[ServerSecurity],
        services: Sequence[Service],
        slug: str,
        td10_compatible: bool = False,
        identity: AgentIdentity | None = None,
        did_web: bool = False,
        access: AccessPolicy | None = None,
    ) -> None:
        self._agent, self._servers, self._security, self._services = agent, servers, security, services
        self._slug = slug
        self._td10_compatible = td10_compatible
        self._identity = identity
        self._did_web = did_web
        self._access = access
        self._stack: AsyncExitStack | None = None
        self._coroutine: Coroutine[Any, Any, None] | None = None

    async def __aenter__(self) -> RunningAgent:
        if self._stack is not None:
            raise RuntimeError("this agent is already being served by this serve() call")
        running = RunningAgent(
            self._agent,
            self._servers,
            self._security,
            self._slug,
            td10_compatible=self._td10_compatible,
            identity=self._identity,
            access=self._access,
        )
        async with AsyncExitStack() as stack:
            for server in self._servers:
                await stack.enter_async_context(server.run(running.context))
            if self._did_web and running.identity is not None:
                if running.td_url is None:
                    raise ValueError("did_web=True needs a web binding (http= or ws=) to serve did.json")
                running.identity = running.identity.with_web(running.td_url)
            await running.refresh()
            for service in self._services:
                await stack.enter_async_context(service(running))
            self._stack = stack.pop_all()
        return running

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _forever(self) -> None:
        # Run as a process's main loop, Ctrl-C and SIGTERM (what Docker and Kubernetes send) stop
        # the agent alike: goodbye, deregistration and closing happen, then ``await`` returns, with
        # no KeyboardInterrupt traceback. A handler the application installed itself is left alone.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        taken = [sig for sig in (signal.SIGINT, signal.SIGTERM) if _may_take(sig)]
        for sig in taken:
            loop.add_signal_handler(sig, stop.set)
        try:
            async with self:
                await stop.wait()
        finally:
            for sig in taken:
                loop.remove_signal_handler(sig)

    # ``Serving`` is also a coroutine, so ``asyncio.run(agent.serve(...))`` works as people write it.
    def _main(self) -> Coroutine[Any, Any, None]:
        if self._coroutine is None:
            self._coroutine = self._forever()
        return self._coroutine

    def __await__(self) -> Generator[Any, None, None]:
        return self._main().__await__()

    def send(self, value: Any) -> Any:
        return self._main().send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None, /) -> Any:
        return self._main().throw(typ, val, tb)

    def close(self) -> None:
        if self._coroutine is not None:
            self._coroutine.close()

    def __getattr__(self, name: str) -> Any:
        # A common slip: `running = agent.serve(...)` then `running.base_urls`, without `async with`.
        if name in _RUNNING_MEMBERS:
            raise AttributeError(
                f"{name!r} belongs to the running agent: use `async with agent.serve(...) as running:` "
                f"and read `running.{name}` (or `await agent.serve(...)` to serve until stopped)"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _may_take(sig: signal.Signals) -> bool:
    """Whether ``serve()`` may handle ``sig``: in the main thread, and only where nobody but Python
    or ``asyncio.run`` (its Ctrl-C handler) has claimed the signal."""
    if threading.current_thread() is not threading.main_thread():
        return False
    handler = signal.getsignal(sig)
    if handler in (signal.SIG_DFL, signal.default_int_handler, None):
        return True
    owner = getattr(getattr(handler, "func", None), "__self__", None)
    return isinstance(handler, functools.partial) and isinstance(owner, asyncio.Runner)


def _web_address(value: bool | int | str, host: str) -> tuple[str, int]:
    if value is True:
        return host, 0
    if isinstance(value, int):
        return host, value
    name, _, port = str(value).rpartition(":")
    return (name or host).strip("[]"), int(port)


def serve(
    agent: ExposedAgent,
    *,
    http: bool | int | str | None = None,
    ws: bool | int | str | None = None,
    mqtt: str | BindingServer | None = None,
    security: ServerSecurity | Sequence[ServerSecurity] = (),
    host: str = "127.0.0.1",
    public_url: str | None = None,
    cors: str | Sequence[str] | None = None,
    services: Sequence[Service] = (),
    td10_compatible: bool = False,
    announce: bool = False,
    directory: str | bool | None = None,
    directory_token: str | None = None,
    registration_ttl: float = 60.0,
    identity: AgentIdentity | None = None,
    did_web: bool = False,
    tls: TlsConfig | None = None,
    access: AccessPolicy | None = None,
) -> Serving:
    """Serve ``agent`` over the bindings asked for.

    ``http``/``ws``: ``True`` (any free port), a port, or ``"host:port"``; WebSocket shares the
    HTTP app (one port) unless given a different port. ``mqtt``: a broker URL or an
    :class:`~wot_agents.bindings.mqtt.MqttServer`. ``security``: the schemes every request
    must satisfy (none: ``nosec``). ``services`` run after the bindings start (announcements,
    registrations) and stop before them. ``td10_compatible`` puts the TD 1.0 context first, as
    TD 1.1 requires "when there are possibly TD 1.0 consumers" (node-wot is one): the SDK's own
    descriptions always start with it now (``LMOS_CONTEXT``); this is for descriptions that do not.
    ``announce=True`` announces the agent by mDNS / DNS-SD; ``directory`` is the URL of a Thing
    Description Directory to stay registered in (``registration_ttl`` seconds, renewed), or
    ``True`` for the one announced on the LAN by DNS-SD. ``identity`` signs the TD (see
    :mod:`wot_agents.trust`); with ``did_web=True`` the agent goes by the did:web of its TD's URL
    and serves that DID's document (``/{slug}/did.json``). ``tls`` (a
    :class:`~wot_agents.trust.TlsConfig`) serves HTTPS/WSS requiring a certificate from its CA
    of every caller but for the public TD and DID document (``CertificateAuth()`` is added unless
    ``security`` has one, e.g. ``CertificateAuth(dids)`` to admit only some), and connects to an
    ``mqtts://`` broker with the same certificate. ``access``
    (an :class:`~wot_agents.trust.AccessPolicy`) says which groups or identities may use which
    affordance; every binding identifies the caller and the TD says what to present.
    """
    from .http import HttpBinding
    from .mqtt import MqttServer
    from .websocket import WebSocketBinding

    if http is None and ws is None and mqtt is None:
        raise ValueError("serve() needs at least one binding: http=..., ws=... or mqtt=...")
    schemes = [security] if not isinstance(security, Sequence) else list(security)
    if tls is not None and not any(isinstance(scheme, CertificateAuth) for scheme in schemes):
        schemes.append(CertificateAuth())  # mutual TLS: every caller shows a certificate of the CA
    slug = slugify(agent.description().title)
    servers: list[BindingServer] = []
    web: dict[tuple[str, int], list[WebBinding]] = {}
    if http is not None and http is not False:
        web.setdefault(_web_address(http, host), []).append(HttpBinding())
    if ws is not None and ws is not False:
        address = (
            _web_address(http, host) if ws is True and http not in (None, False) else _web_address(ws, host)
        )
        web.setdefault(address, []).append(WebSocketBinding())
    for (bind_host, port), bindings in web.items():
        servers.append(
            WebServer(
                bindings,
                host=bind_host,
                port=port,
                public_url=public_url,
                cors=cors,
                tls=tls.server_context() if tls is not None else None,
            )
        )
    if mqtt is not None:
        client_tls = tls.client_context() if tls is not None else None
        servers.append(MqttServer(mqtt, tls=client_tls) if isinstance(mqtt, str) else mqtt)
    if announce or directory:
        services = [*services, *_discovery_services(announce, directory, directory_token, registration_ttl)]
    if access is not None and access.directory is not None:  # group changes apply at once
        watched = access
        services = [lambda running: watched.watch(), *services]
    return Serving(agent, servers, schemes, services, slug, td10_compatible, identity, did_web, access)


def _discovery_services(
    announce: bool, directory: str | bool | None, token: str | None, ttl: float
) -> list[Service]:
    # discovery/ sits above the SDK; like any optional integration it is imported only when asked for.
    try:
        from discovery import announcement, registration
    except ImportError as exc:
        raise ImportError(
            f"announce=/directory= need the discovery extra: pip install 'wot-agents[discovery]' ({exc})"
        ) from exc
    chosen = [announcement()] if announce else []
    if directory:
        chosen.append(registration(None if directory is True else str(directory), token=token, ttl=ttl))
    return chosen


def _for_td10_consumers(description: AgentDescription) -> AgentDescription:
    """TD 1.1 section 5.3.1.1: the TD 1.0 context first, the TD 1.1 context second."""
    context = description.context
    entries: list[Any] = [context] if isinstance(context, str) else list(context)
    if entries and entries[0] == TD10_CONTEXT:
        return description
    return description.model_copy(update={"context": [TD10_CONTEXT, *entries]})
