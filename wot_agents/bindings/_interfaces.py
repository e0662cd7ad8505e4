"""The typed interfaces between the Agent, the binding servers, the binding clients and the consumer.

Servers see an agent only through :class:`ExposedAgent` (the SDK's ``Agent`` satisfies it),
the consumer sees a protocol only through :class:`ClientBinding`, so neither ever
special-cases a protocol and a new binding is one server class and one client class.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

from .._agent import FormProvider
from .._errors import ConnectError, RemoteError, RequestTimeout
from .._model import (
    ActionAffordance,
    AgentDescription,
    EventAffordance,
    Form,
    PropertyAffordance,
    SecurityScheme,
)
from ..trust._groups import AccessPolicy
from ._security import Applied, ServerSecurity
from ._vocabulary import Kind

__all__ = [
    "BindingServer",
    "ClientBinding",
    "ExposedAction",
    "ExposedAgent",
    "ExposedEvent",
    "ExposedProperty",
    "Interaction",
    "ServeContext",
    "Stream",
]

T = TypeVar("T")


class ExposedAction(Protocol):
    @property
    def affordance(self) -> ActionAffordance: ...

    async def invoke(self, value: Any) -> Any:
        """Validate ``value``, run the action, return its JSON-able output (``PayloadError`` if invalid)."""
        ...


class ExposedProperty(Protocol):
    @property
    def affordance(self) -> PropertyAffordance: ...

    async def read(self) -> Any: ...

    async def write(self, value: Any) -> None: ...

    def observe(self) -> AsyncIterator[Any]:
        """New values from now on; registered when called, so none is lost before the first ``anext``."""
        ...


class ExposedEvent(Protocol):
    @property
    def affordance(self) -> EventAffordance: ...

    def subscribe(self) -> AsyncIterator[Any]:
        """Event data from now on; registered when called, like ``observe``."""
        ...


class ExposedAgent(Protocol):
    """What a binding server needs of an agent: its affordances and its description."""

    @property
    def actions(self) -> Mapping[str, ExposedAction]: ...

    @property
    def properties(self) -> Mapping[str, ExposedProperty]: ...

    @property
    def events(self) -> Mapping[str, ExposedEvent]: ...

    def description(
        self,
        *,
        forms: Sequence[FormProvider] = (),
        security_definitions: Mapping[str, SecurityScheme] | None = None,
        security: str | list[str] | None = None,
        base: str | None = None,
    ) -> AgentDescription: ...


@dataclass(frozen=True, slots=True)
class ServeContext:
    """What every binding server of one ``serve()`` shares."""

    agent: ExposedAgent
    #: A stable, URL- and topic-safe name of the agent (paths, topics).
    slug: str
    #: The agent's TD ``id`` (LMOS messages carry it as ``thingID``).
    thing_id: str
    #: The current description with every server's forms (served, published).
    describe: Callable[[], AgentDescription]
    security: Sequence[ServerSecurity] = ()
    #: The agent's did:web document, if it has one (the web server serves it where the DID says).
    did_document: Callable[[], Mapping[str, Any] | None] = lambda: None
    #: Who may use which affordance (``serve(access=...)``); every server identifies the caller.
    access: AccessPolicy | None = None


@runtime_checkable
class BindingServer(FormProvider, Protocol):
    """One protocol server: started by ``serve()`` as an async context manager, then asked for forms.

    ``description_changed`` is called with the new TD whenever it changes, for servers that
    publish it (the MQTT server keeps it retained on a topic).
    """

    def run(self, context: ServeContext) -> AbstractAsyncContextManager[None]: ...

    @property
    def base_url(self) -> str | None: ...

    def urls(self) -> dict[str, str]:
        """Base URL by binding (``http``, ``ws``, ``mqtt``) while running."""
        ...

    async def description_changed(self, description: AgentDescription) -> None: ...


@dataclass(frozen=True, slots=True)
class Interaction:
    """One operation a client performs through one form."""

    op: str
    kind: Kind
    name: str
    form: Form
    href: str
    thing_id: str | None
    auth: Applied
    timeout: float
    #: True when a reply is expected (MQTT actions without output are fire-and-forget).
    expects_reply: bool = True

    # The errors every client raises, worded the same way whatever the protocol.

    def timed_out(self, where: str | None = None) -> RequestTimeout:
        return RequestTimeout(
            f"{self.op} {self.name!r}: no answer from {where or self.href} within {self.timeout} s",
            href=self.href,
            thing_id=self.thing_id,
        )

    def unreachable(self, reason: object) -> ConnectError:
        return ConnectError(
            f"{self.op} {self.name!r}: cannot reach {self.href}: {reason}",
            href=self.href,
            thing_id=self.thing_id,
        )

    def refused(
        self, status: int | None, reason: str, problem: Mapping[str, Any] | None = None
    ) -> RemoteError:
        answer = f"answered {status}" if status is not None else "failed"
        return RemoteError(
            f"{self.op} {self.name!r}: {self.href} {answer}: {reason}",
            status=status,
            problem=problem,
            href=self.href,
            thing_id=self.thing_id,
        )


class ClientBinding(Protocol):
    """The client half of a binding, as the consumer uses it."""

    #: URI schemes this client handles, e.g. ``{"http", "https"}``.
    schemes: frozenset[str]

    def accepts(self, form: Form, op: str) -> bool:
        """Whether this client can perform ``op`` through ``form`` (subprotocol, method...)."""
        ...

    async def request(self, interaction: Interaction, payload: Any = None) -> Any:
        """Perform a one-reply operation; return the decoded reply (None when there is none)."""
        ...

    async def stream(self, interaction: Interaction) -> Stream[Any]:
        """Open a streaming operation (observe, subscribe); return once the server has it.

        "Has it" is as strong as the protocol allows: response headers for SSE, SUBACK for MQTT,
        the request written for WebSocket (the LMOS protocol does not acknowledge subscriptions).
        """
        ...

    async def aclose(self) -> None: ...


class Stream(AsyncIterator[T]):
    """Values of one open stream, and the way to close it (also as an async context manager).

    ``aclose`` releases the connection or subscription even if iteration never started,
    which a bare async generator cannot promise. This is idempotent.
    """

    def __init__(self, values: AsyncIterator[T], close: Callable[[], Awaitable[None]]) -> None:
        self._values = values
        self._close: Callable[[], Awaitable[None]] | None = close

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        if self._close is None:
            raise StopAsyncIteration
        return await anext(self._values)

    async def aclose(self) -> None:
        close, self._close = self._close, None
        if close is None:
            return
        try:
            aclose = getattr(self._values, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            await close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
