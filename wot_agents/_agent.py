"""Declaring an agent in Python: ``Agent``, its actions, properties and events.

An :class:`Agent` is what a developer writes; it knows nothing of protocols. The bindings serve
it and contribute the forms of its Agent Description through the :class:`FormProvider`
interface, so the same agent can be reached over HTTP, WebSocket and MQTT at once::

    agent = Agent("Weather", capabilities=[Capability(id="urn:weather:forecast", examples=[...])])

    @agent.action(safe=True)
    async def forecast(city: str, days: int = 1) -> str:
        '''Tells the forecast for a city.'''
        ...

    temperature = agent.property("temperature", float, default=21.5, observable=True)
    alerts = agent.event("alert", str)
    await alerts.emit("storm warning")
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, overload

from ._errors import PayloadError
from ._model import (
    LMOS_CONTEXT,
    PREFIXES,
    ActionAffordance,
    AgentDescription,
    AgentMetadata,
    Capability,
    EventAffordance,
    Form,
    PropertyAffordance,
    SecurityScheme,
    Vendor,
    VersionInfo,
)
from ._schema import Codec, codec, schema_of, signature_codec
from .trust._groups import check_access

if TYPE_CHECKING:
    from .bindings import Serving

__all__ = ["Action", "AffordanceKind", "Agent", "Event", "FormProvider", "Property"]

AffordanceKind = Literal["property", "action", "event"]
F = TypeVar("F", bound=Callable[..., Any])

#: How many values a slow observer or subscriber may fall behind before the oldest are dropped.
#: Emitting never waits for a reader: one stuck client must not stall the agent.
QUEUE_SIZE = 256


class FormProvider(Protocol):
    """What a binding server contributes to the Agent Description: the forms that reach it."""

    def forms(self, kind: AffordanceKind, name: str) -> list[Form]:
        """Forms of one affordance, e.g. an HTTP POST to ``/actions/{name}``."""
        ...

    def thing_forms(self) -> list[Form]:
        """Forms at Thing level, e.g. ``readallproperties``."""
        ...


class Subscription(AsyncIterator[Any]):
    """Values published after it was created, in order, until :meth:`aclose`.

    It registers at creation, not at the first ``anext``, so nothing published in between is
    lost. Use it as ``async with`` (or call ``aclose``) to stop receiving.
    """

    def __init__(self, fanout: _Fanout) -> None:
        self._fanout = fanout
        self._queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)
        fanout._queues.add(self._queue)

    async def __anext__(self) -> Any:
        if self._queue not in self._fanout._queues and self._queue.empty():
            raise StopAsyncIteration
        return await self._queue.get()

    async def aclose(self) -> None:
        """Stop receiving; idempotent."""
        self._fanout._queues.discard(self._queue)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _Fanout:
    """Delivers each published value to every current subscription, never blocking the publisher."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Any]] = set()
        self.dropped = 0

    def publish(self, value: Any) -> None:
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(value)

    @property
    def listeners(self) -> int:
        return len(self._queues)

    def listen(self) -> Subscription:
        return Subscription(self)


def _without_none(members: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in members.items() if value is not None}


async def _resolve(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


class Action:
    """One action: its affordance (without forms) and how to invoke it from JSON input."""

    def __init__(self, function: Callable[..., Any], name: str, settings: Mapping[str, Any]) -> None:
        self.name = name
        self.function = function
        self._codec = signature_codec(function, name)
        schemas = {"input": self._codec.input_schema, "output": self._codec.output_schema}
        self.affordance = ActionAffordance.model_validate(_without_none({**settings, **schemas}))

    async def invoke(self, raw_input: Any = None) -> Any:
        """Validate JSON input, run the function, return its JSON output (``PayloadError`` on bad input)."""
        check_access("action", self.name)
        result = await _resolve(self._codec.call(self.function, raw_input))
        return self._codec.output.dump(result)


class Property:
    """One property: a stored value (or a getter), validated on write, observable."""

    def __init__(
        self,
        name: str,
        value_codec: Codec,
        affordance: PropertyAffordance,
        *,
        value: Any = None,
        getter: Callable[[], Any] | None = None,
    ) -> None:
        self.name = name
        self.affordance = affordance
        self._codec = value_codec
        self._value = value
        self._getter = getter
        self._observers = _Fanout()

    @property
    def writable(self) -> bool:
        return not self.affordance.read_only and self._getter is None

    async def read(self) -> Any:
        """The current value as JSON data."""
        check_access("property", self.name)
        value = await _resolve(self._getter()) if self._getter else self._value
        return self._codec.dump(value)

    async def write(self, raw: Any) -> None:
        """A write from a client: refused for read-only properties, validated, then observed."""
        check_access("property", self.name)
        if not self.writable:
            raise PayloadError(f"property {self.name!r} is read-only")
        self.set(self._codec.load(raw))

    def set(self, value: Any) -> None:
        """Change the value from the agent's own code and notify observers."""
        if self._getter is not None:
            raise TypeError(f"property {self.name!r} is computed by a getter and cannot be set")
        self._value = value
        self._observers.publish(self._codec.dump(value))

    def changed(self) -> None:
        """Tell observers a computed property changed; they read it again."""
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        self._observers.publish(await self.read())

    def observe(self) -> Subscription:
        """Each new value, as JSON data, until the iterator is closed."""
        check_access("property", self.name)
        return self._observers.listen()


class Event:
    """One event source; :meth:`emit` reaches every subscriber of every binding."""

    def __init__(self, name: str, data_codec: Codec, affordance: EventAffordance) -> None:
        self.name = name
        self.affordance = affordance
        self._codec = data_codec
        self._subscribers = _Fanout()

    async def emit(self, data: Any = None) -> None:
        """Publish one event. Never waits for subscribers (slow ones lose the oldest events)."""
        self._subscribers.publish(self._codec.dump(data))

    @property
    def subscribers(self) -> int:
        return self._subscribers.listeners

    def subscribe(self) -> Subscription:
        """Each event's data, as JSON data, until the iterator is closed."""
        check_access("event", self.name)
        return self._subscribers.listen()


def _first_paragraph(function: Callable[..., Any]) -> str | None:
    doc = inspect.getdoc(function)
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip() if doc else None


class Agent:
    """An agent declared in Python; produces its Agent Description and dispatches interactions.

    Pass ``id`` for a stable identity across restarts (directories key descriptions by id); by
    default a fresh ``urn:uuid:`` is drawn.
    """

    def __init__(
        self,
        title: str,
        *,
        id: str | None = None,
        description: str | None = None,
        version: str | None = None,
        vendor: Vendor | None = None,
        capabilities: Iterable[Capability] = (),
        tenants: Sequence[str] | None = None,
        channels: Sequence[str] | None = None,
        subset: str | None = None,
        links: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.title = title
        self.id = id or f"urn:uuid:{uuid.uuid4()}"
        self.info = description
        self.version = version
        self.vendor = vendor
        self.capabilities: list[Capability] = list(capabilities)
        self.tenants = list(tenants) if tenants is not None else None
        self.channels = list(channels) if channels is not None else None
        self.subset = subset
        self.links = [dict(link) for link in links] if links else None
        self.actions: dict[str, Action] = {}
        self.properties: dict[str, Property] = {}
        self.events: dict[str, Event] = {}

    def _claim(self, name: str) -> str:
        if not name or name in self.actions or name in self.properties or name in self.events:
            problem = f"already has an affordance named {name!r}" if name else "cannot name an affordance ''"
            raise ValueError(f"agent {self.title!r} {problem}")
        return name

    # --- declaring -------------------------------------------------------------------------------

    def add_capability(self, capability: Capability) -> None:
        self.capabilities.append(capability)

    @overload
    def action(self, function: F) -> F: ...

    @overload
    def action(
        self,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        safe: bool | None = None,
        idempotent: bool | None = None,
        synchronous: bool | None = None,
    ) -> Callable[[F], F]: ...

    def action(
        self,
        function: F | None = None,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        safe: bool | None = None,
        idempotent: bool | None = None,
        synchronous: bool | None = None,
    ) -> F | Callable[[F], F]:
        """Declare an action; its input and output schemas come from the function's type hints.

        The description defaults to the first paragraph of the docstring.
        """

        def register(func: F) -> F:
            action_name = self._claim(name or func.__name__)
            settings = {
                "title": title,
                "description": description or _first_paragraph(func),
                "safe": safe,
                "idempotent": idempotent,
                "synchronous": synchronous,
            }
            self.actions[action_name] = Action(func, action_name, settings)
            return func

        return register(function) if function is not None else register

    def property(
        self,
        name: str,
        type_: Any = Any,
        *,
        default: Any = None,
        getter: Callable[[], Any] | Callable[[], Awaitable[Any]] | None = None,
        writable: bool = True,
        observable: bool = False,
        title: str | None = None,
        description: str | None = None,
        unit: str | None = None,
    ) -> Property:
        """Declare a property holding a value of ``type_`` (or computed by ``getter``, read-only)."""
        schema = schema_of(type_)
        read_only = not writable or getter is not None
        settings = {
            "title": title,
            "description": description,
            "unit": unit,
            "observable": observable or None,
            "readOnly": read_only or None,
        }
        affordance = PropertyAffordance.model_validate(schema | _without_none(settings))
        value_codec = codec(type_, f"value of property {name!r}")
        stored = None if getter is not None or default is None else value_codec.coerce(default)
        prop = Property(self._claim(name), value_codec, affordance, value=stored, getter=getter)
        self.properties[name] = prop
        return prop

    def event(
        self, name: str, type_: Any = None, *, title: str | None = None, description: str | None = None
    ) -> Event:
        """Declare an event whose data is of ``type_`` (``None``: events carry no data)."""
        settings: dict[str, Any] = {"title": title, "description": description}
        if type_ is not None:
            settings["data"] = schema_of(type_)
        affordance = EventAffordance.model_validate(_without_none(settings))
        data_codec = codec(Any if type_ is None else type_, f"data of event {name!r}")
        source = Event(self._claim(name), data_codec, affordance)
        self.events[name] = source
        return source

    # --- serving -------------------------------------------------------------------------------

    def serve(self, **options: Any) -> Serving:
        """Serve this agent over the bindings asked for: ``async with agent.serve(http=8080) as running``.

        ``await agent.serve(...)`` serves until cancelled. The options are those of
        :func:`wot_agents.bindings.serve` (``http``, ``ws``, ``mqtt``, ``security``...).
        """
        from .bindings import serve

        return serve(self, **options)

    # --- describing ------------------------------------------------------------------------------

    def description(
        self,
        *,
        forms: Sequence[FormProvider] = (),
        security_definitions: Mapping[str, SecurityScheme | Mapping[str, Any]] | None = None,
        security: str | list[str] | None = None,
        base: str | None = None,
    ) -> AgentDescription:
        """The Agent Description, with the forms of every given binding.

        Without ``security_definitions`` the agent declares ``nosec``.
        """
        definitions = {
            key: SecurityScheme.model_validate(value)
            for key, value in (security_definitions or {"nosec_sc": {"scheme": "nosec"}}).items()
        }
        members: dict[str, Any] = {
            "context": list(LMOS_CONTEXT),
            "type_": "lmos:Agent",
            "id": self.id,
            "title": self.title,
            "description": self.info,
            "version": VersionInfo(instance=self.version) if self.version else None,
            "base": base,
            "links": self.links,
            "security": security or next(iter(definitions)),
            "security_definitions": definitions,
            "metadata": AgentMetadata(vendor=self.vendor) if self.vendor else None,
            "capabilities": self.capabilities or None,
            "supported_tenants": self.tenants,
            "supported_channels": self.channels,
            "subset": self.subset,
        }
        tables: tuple[tuple[AffordanceKind, Mapping[str, Action | Property | Event], str], ...] = (
            ("property", self.properties, "properties"),
            ("action", self.actions, "actions"),
            ("event", self.events, "events"),
        )
        for kind, table, field in tables:
            if table:
                members[field] = {
                    name: entry.affordance.model_copy(
                        update={"forms": [form for provider in forms for form in provider.forms(kind, name)]}
                    )
                    for name, entry in table.items()
                }
        thing_forms = [form for provider in forms for form in provider.thing_forms()]
        if thing_forms:
            members["forms"] = thing_forms
        description = AgentDescription.model_validate(_without_none(members))
        _add_prefixes(description)
        return description


def _add_prefixes(description: AgentDescription) -> None:
    """Declare in ``@context`` each binding prefix (``mqv:``...) the forms use and no context defines."""
    used = {
        key.split(":", 1)[0]
        for _, _, affordance in description.affordances()
        for form in affordance.forms
        for key in form.to_dict()
        if ":" in key
    } | {key.split(":", 1)[0] for form in description.forms or () for key in form.to_dict() if ":" in key}
    missing = {prefix: PREFIXES[prefix] for prefix in sorted(used) if prefix in PREFIXES and prefix != "htv"}
    if missing and isinstance(description.context, list):
        extension = next((entry for entry in description.context if isinstance(entry, dict)), None)
        if extension is not None:
            extension.update(missing)
