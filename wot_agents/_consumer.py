"""Consuming any Thing or Agent Description: pick a form, apply security, validate payloads.

``consume(td)`` gives a :class:`ConsumedThing` whose methods name affordances, never protocols:
the form is chosen by operation, by URI scheme (the caller's ``prefer`` order, then the TD's
order) and by whether the caller holds credentials for the form's security. Inputs are
validated against the affordance's data schema before anything is sent, outputs after they
arrive, so a schema mismatch is a :class:`PayloadError` on whichever side caused it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import urljoin, urlsplit

import jsonschema_rs

from ._chat import CHAT_ACTION, CHAT_STREAM_EVENT, ChatChunk, ChatMessage, ChatReply, ChatRequest
from ._errors import DescriptionError, NoSuitableFormError, PayloadError, Problem
from ._fetch import request_description
from ._json import pointer_from_path
from ._model import AgentDescription, DataSchema, InteractionAffordance
from ._pool import ClientPool
from .bindings._interfaces import ClientBinding, Interaction, Stream
from .bindings._security import Credentials, apply_security
from .bindings._vocabulary import MAX_REPLY, Kind, form_ops
from .trust import TrustPolicy
from .trust._tls import TlsConfig

__all__ = ["DEFAULT_PREFERENCE", "ConsumedThing", "consume"]

#: What ``chat`` sends: the message list, or a whole request.
_Messages = Sequence[ChatMessage | Mapping[str, Any]] | ChatRequest

#: URI schemes tried first to last when an affordance has forms for several protocols.
DEFAULT_PREFERENCE: tuple[str, ...] = ("http", "https", "ws", "wss", "mqtt", "mqtts")

#: How long a streamed chat reply may trail the action's result (seconds).
STREAM_GRACE = 2.0

#: Members of a property affordance that are about the interaction, not the value's schema.
_NOT_SCHEMA = frozenset({"forms", "observable", "uriVariables", "@type", "titles", "descriptions"})


def consume(
    td: AgentDescription | Mapping[str, Any] | str | bytes,
    *,
    credentials: Credentials = None,
    prefer: Sequence[str] = DEFAULT_PREFERENCE,
    timeout: float = 30.0,
    validate: bool = True,
    trust: TrustPolicy | None = None,
    tls: TlsConfig | None = None,
    max_reply: int = MAX_REPLY,
    clients: ClientPool | None = None,
) -> ConsumedThing:
    """A client for the thing ``td`` describes (a model, a parsed document, JSON text, or a URL).

    Given an ``http(s)://`` URL, the TD is fetched from it when the thing is first used (``async
    with`` or the first interaction), with the limits of :func:`~wot_agents.request_description`.

    ``credentials`` are the caller's secrets for the TD's security schemes: one credential, or a
    mapping from security-definition name to credential. ``trust`` (a :class:`TrustPolicy`) is
    checked before the first interaction: an unsigned, tampered or untrusted description is
    refused with a :class:`~wot_agents.TrustError` and nothing is sent. ``tls`` (a
    :class:`~wot_agents.trust.TlsConfig`) verifies https/wss/mqtts servers against its CA and
    presents its certificate (mutual TLS, the ``lmos:mtls`` scheme). ``max_reply`` bounds what is
    read of one reply (bytes of a body, an event, a message): larger is a ``RemoteError``.
    ``clients`` (a :class:`~wot_agents.ClientPool`) shares sessions and connections with every other
    thing consumed through the same pool (its ``max_reply`` and TLS apply then); without it the
    thing has clients of its own. Use the result as an async context manager, or call
    :meth:`ConsumedThing.aclose` when done.
    """
    url: str | None = None
    description: AgentDescription | None
    if isinstance(td, AgentDescription):
        description = td
    elif isinstance(td, str) and _is_url(td):
        description, url = None, td.strip()
    elif isinstance(td, str | bytes):
        try:
            description = AgentDescription.from_json(td)
        except DescriptionError as exc:
            text = td.lstrip()[:1]
            if text in ("{", b"{"):
                raise
            raise DescriptionError(
                f"{exc}: consume() takes a TD (an AgentDescription, a dict or JSON text) or the "
                "http(s):// URL where one is served"
            ) from None
    else:
        description = AgentDescription.from_dict(td)
    return ConsumedThing(
        description,
        url=url,
        credentials=credentials,
        prefer=prefer,
        timeout=timeout,
        validate=validate,
        trust=trust,
        tls=tls,
        max_reply=max_reply,
        clients=clients,
    )


class ConsumedThing:
    """The consumer side of one thing: properties, actions and events by name."""

    def __init__(
        self,
        description: AgentDescription | None,
        *,
        url: str | None = None,
        credentials: Credentials = None,
        prefer: Sequence[str] = DEFAULT_PREFERENCE,
        timeout: float = 30.0,
        validate: bool = True,
        clients: ClientPool | Sequence[ClientBinding] | None = None,
        trust: TrustPolicy | None = None,
        tls: TlsConfig | None = None,
        max_reply: int = MAX_REPLY,
    ) -> None:
        if description is None and url is None:
            raise ValueError("ConsumedThing needs a description or the URL to fetch it from")
        self._description = description
        self.url = url
        self._fetching = asyncio.Lock()
        if isinstance(clients, ClientPool):
            # Shared: the pool's clients serve many things, and their TLS is the pool's.
            if tls is not None and clients.tls is not None and tls is not clients.tls:
                raise ValueError(
                    "a ClientPool's clients use its own TLS config: give it to ClientPool(tls=...)"
                )
            tls = tls or clients.tls
            self._pool, self._owns_pool = clients, False
            max_reply = clients.max_reply
        else:
            self._pool, self._owns_pool = ClientPool(clients or (), tls=tls, max_reply=max_reply), True
        self.max_reply = max_reply
        self._tls = tls
        if tls is not None:  # the certificate satisfies lmos:mtls beside the other credentials
            given = dict(credentials) if isinstance(credentials, Mapping) else {"given": credentials}
            credentials = {**{k: v for k, v in given.items() if v is not None}, "tls": tls}
        self._trust = trust
        self._trusted = trust is None
        self.timeout = timeout
        self._credentials = credentials
        self._prefer = tuple(prefer)
        self._validate = validate
        self._streams: set[Stream[Any]] = set()
        self._validators: dict[tuple[str, str, str], Any] = {}
        self._chosen: dict[tuple[str, str, str], tuple[Interaction, ClientBinding]] = {}
        self._closed = False

    @property
    def description(self) -> AgentDescription:
        """The TD this thing is consumed through (fetched first when consumed by URL)."""
        if self._description is None:
            raise RuntimeError(
                f"the TD at {self.url} is not fetched yet: use `async with consume(url) as thing:` "
                "(or await one interaction) before reading thing.description"
            )
        return self._description

    @property
    def id(self) -> str | None:
        return self.description.id

    # --- the interactions ------------------------------------------------------------------------

    async def read_property(self, name: str) -> Any:
        await self._ready()
        affordance = self._affordance("property", name)
        interaction, client = self._choose("property", name, affordance, "readproperty")
        value = await client.request(interaction)
        self._check("property", name, "value", affordance, value, received=True)
        return value

    async def write_property(self, name: str, value: Any) -> None:
        await self._ready()
        affordance = self._affordance("property", name)
        if getattr(affordance, "read_only", None):
            raise PayloadError(f"property {name!r} is read-only", thing_id=self.id)
        self._check("property", name, "value", affordance, value, received=False)
        interaction, client = self._choose("property", name, affordance, "writeproperty")
        await client.request(interaction, value)

    async def invoke_action(self, name: str, input: Any = None) -> Any:
        await self._ready()
        affordance = self._affordance("action", name)
        schema = getattr(affordance, "input", None)
        if schema is not None or input is not None:
            self._check("action", name, "input", schema, input, received=False)
        interaction, client = self._choose("action", name, affordance, "invokeaction")
        output = await client.request(interaction, input)
        output_schema = getattr(affordance, "output", None)
        if output_schema is not None:
            self._check("action", name, "output", output_schema, output, received=True)
        return output

    async def observe_property(self, name: str) -> Stream[Any]:
        """The property's values as they change: ``async with await thing.observe_property(n) as s``."""
        await self._ready()
        affordance = self._affordance("property", name)
        return await self._open_stream("property", name, affordance, "observeproperty", "value", affordance)

    async def subscribe_event(self, name: str) -> Stream[Any]:
        """The event's data as it occurs: ``async with await thing.subscribe_event(n) as events``."""
        await self._ready()
        affordance = self._affordance("event", name)
        return await self._open_stream("event", name, affordance, "subscribeevent", "data", affordance.data)  # type: ignore[attr-defined]

    # --- the chat convention (see wot_agents._chat) ----------------------------------------------

    async def chat(self, messages: _Messages, *, conversation_id: str | None = None) -> ChatReply:
        """Send the conversation to the agent's ``chat`` action; return its reply.

        ``messages`` is the message list, or a whole :class:`ChatRequest` (with attachments and
        the LMOS ``conversationContext``) sent as it is.
        """
        request = _chat_request(messages, conversation_id, turn_id=None)
        return ChatReply.model_validate(await self.invoke_action(CHAT_ACTION, request))

    async def chat_stream(
        self,
        messages: _Messages,
        *,
        conversation_id: str | None = None,
        on_reply: Callable[[ChatReply], object] | None = None,
    ) -> AsyncIterator[str]:
        """The reply's text in parts as the agent produces them (``chatStream``), then nothing more.

        An agent without the stream event gives its whole reply as one part. Iterate to the end
        (or ``aclose()`` the iterator) so the subscription is released at once. ``on_reply`` is
        given the whole :class:`ChatReply` once the action answered (its anonymization entities,
        say, which no part carries).
        """
        await self._ready()
        if CHAT_STREAM_EVENT not in (self.description.events or {}):
            whole = await self.chat(messages, conversation_id=conversation_id)
            if on_reply is not None:
                on_reply(whole)
            yield whole.text
            return
        turn_id = str(uuid.uuid4())
        request = _chat_request(messages, conversation_id, turn_id=turn_id)
        async with await self.subscribe_event(CHAT_STREAM_EVENT) as chunks:
            invocation = asyncio.ensure_future(self.invoke_action(CHAT_ACTION, request))
            streamed = False
            try:
                while True:
                    next_chunk = asyncio.ensure_future(anext(chunks))
                    await asyncio.wait({next_chunk, invocation}, return_when=asyncio.FIRST_COMPLETED)
                    if not next_chunk.done():
                        # The reply is complete; parts already sent may still be on their way.
                        try:
                            async with asyncio.timeout(STREAM_GRACE):
                                await next_chunk
                        except TimeoutError:
                            break
                    chunk = ChatChunk.model_validate(next_chunk.result())
                    if chunk.turn_id != turn_id:
                        continue
                    if chunk.done:
                        break
                    streamed = streamed or bool(chunk.delta)
                    yield chunk.delta
                reply = ChatReply.model_validate(await invocation)
                if on_reply is not None:
                    on_reply(reply)
            finally:
                if not invocation.done():
                    invocation.cancel()
        if not streamed:
            yield reply.text

    # --- lifecycle -------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close this thing's open streams and, unless it came from a shared
        :class:`~wot_agents.ClientPool`, its clients' connections. This is idempotent."""
        self._closed = True
        streams, self._streams = list(self._streams), set()
        await asyncio.gather(*(stream.aclose() for stream in streams), return_exceptions=True)
        if self._owns_pool:
            await self._pool.aclose()

    async def __aenter__(self) -> Self:
        await self._fetch()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _fetch(self) -> None:
        """Fetch the TD once when consumed by URL; concurrent first calls share one fetch."""
        if self._description is not None:
            return
        assert self.url is not None
        async with self._fetching:
            if self._description is None:
                ssl = self._tls.client_context() if self._tls is not None else None
                self._description = await request_description(self.url, ssl=ssl)

    async def _ready(self) -> None:
        """The TD at hand (fetched if need be) and the trust policy applied, once."""
        await self._fetch()
        await self._check_trust()

    async def _check_trust(self) -> None:
        """Apply the trust policy once: the description is fixed for this object's life."""
        if not self._trusted and self._trust is not None:
            await self._trust.check(self.description, source=f"consume({self.description.title!r})")
            self._trusted = True

    # --- form choice -----------------------------------------------------------------------------

    def _affordance(self, kind: Kind, name: str) -> InteractionAffordance:
        table = {
            "property": self.description.properties,
            "action": self.description.actions,
            "event": self.description.events,
        }[kind] or {}
        affordance = table.get(name)
        if affordance is None:
            known = ", ".join(sorted(table)) or "none"
            raise KeyError(f"{self.description.title!r} has no {kind} {name!r} (its {kind} names: {known})")
        return affordance

    def _client_for(self, scheme: str) -> ClientBinding | None:
        if self._closed:
            raise RuntimeError("this ConsumedThing is closed")
        return self._pool.client_for(scheme)

    def _choose(
        self, kind: Kind, name: str, affordance: InteractionAffordance, op: str
    ) -> tuple[Interaction, ClientBinding]:
        """The form (and client) for ``op``; chosen once, the TD and credentials being fixed."""
        if self._closed:
            raise RuntimeError("this ConsumedThing is closed")
        if self._pool.closed:
            raise RuntimeError("the ClientPool of this ConsumedThing is closed")
        key = (kind, name, op)
        chosen = self._chosen.get(key)
        if chosen is None:
            chosen = self._chosen[key] = self._choose_form(kind, name, affordance, op)
        return chosen

    def _choose_form(
        self, kind: Kind, name: str, affordance: InteractionAffordance, op: str
    ) -> tuple[Interaction, ClientBinding]:
        reasons: list[str] = []
        candidates: list[tuple[int, int, Interaction, ClientBinding]] = []
        for index, form in enumerate(affordance.forms):
            if op not in form_ops(form, kind):
                continue
            href = urljoin(self.description.base or "", form.href)
            scheme = urlsplit(href).scheme.lower()
            client = self._client_for(scheme)
            if client is None:
                reasons.append(f"{href}: no client for the {scheme!r} scheme")
                continue
            if not client.accepts(form, op):
                reasons.append(
                    f"{href}: the {scheme} client cannot use this form (subprotocol {form.subprotocol!r})"
                )
                continue
            auth = apply_security(self.description, form.security, self._credentials)
            if auth is None:
                needed = form.security if form.security is not None else self.description.security
                reasons.append(f"{href}: no credentials given for security {needed!r}")
                continue
            rank = self._prefer.index(scheme) if scheme in self._prefer else len(self._prefer)
            interaction = Interaction(
                op=op,
                kind=kind,
                name=name,
                form=form,
                href=href,
                thing_id=self.id,
                auth=auth,
                timeout=self.timeout,
                expects_reply=_expects_reply(affordance, op),
            )
            candidates.append((rank, index, interaction, client))
        if not candidates:
            why = "; ".join(reasons) if reasons else f"no form offers {op!r}"
            raise NoSuitableFormError(
                f"cannot {op} {name!r} of {self.description.title!r}: {why}", thing_id=self.id
            )
        _, _, interaction, client = min(candidates, key=lambda candidate: candidate[:2])
        return interaction, client

    async def _open_stream(
        self,
        kind: Kind,
        name: str,
        affordance: InteractionAffordance,
        op: str,
        part: str,
        schema: DataSchema | InteractionAffordance | None,
    ) -> Stream[Any]:
        await self._ready()
        interaction, client = self._choose(kind, name, affordance, op)
        opened = await client.stream(interaction)

        async def checked() -> Any:
            async for value in opened:
                self._check(kind, name, part, schema, value, received=True)
                yield value

        async def close() -> None:
            self._streams.discard(stream)
            await opened.aclose()

        values = opened if schema is None or not self._validate else checked()
        stream: Stream[Any] = Stream(values, close)
        self._streams.add(stream)  # closed with the thing, even when its clients are shared
        return stream

    # --- payload validation ----------------------------------------------------------------------

    def _check(self, kind: str, name: str, part: str, schema: Any, value: Any, *, received: bool) -> None:
        if not self._validate or schema is None:
            return
        key = (kind, name, part)
        validator = self._validators.get(key)
        if validator is None:
            document = {k: v for k, v in schema.to_dict().items() if k not in _NOT_SCHEMA}
            validator = self._validators[key] = jsonschema_rs.validator_for(document)
        problems = [
            Problem(pointer_from_path(error.instance_path), error.message)
            for error in validator.iter_errors(value)
        ]
        if problems:
            direction = "received" if received else "given"
            raise PayloadError(
                f"the {part} {direction} for {kind} {name!r} does not match its schema",
                problems=problems,
                thing_id=self.id,
            )


def _is_url(text: str) -> bool:
    candidate = text.strip()
    return " " not in candidate and urlsplit(candidate).scheme.lower() in ("http", "https")


def _expects_reply(affordance: InteractionAffordance, op: str) -> bool:
    if op != "invokeaction":
        return op in ("readproperty", "readallproperties", "queryaction")
    return getattr(affordance, "output", None) is not None


def _chat_request(messages: _Messages, conversation_id: str | None, turn_id: str | None) -> dict[str, Any]:
    """The ``chat`` input; it is checked against the agent's own input schema when sent."""
    if isinstance(messages, ChatRequest):
        request = messages.model_dump(mode="json", by_alias=True, exclude_none=True)
    else:
        request = {
            "messages": [
                m.model_dump(mode="json", by_alias=True, exclude_none=True)
                if isinstance(m, ChatMessage)
                else dict(m)
                for m in messages
            ]
        }
    if conversation_id is not None:
        request["conversationId"] = conversation_id
    if turn_id is not None:
        request["turnId"] = turn_id
    return request
