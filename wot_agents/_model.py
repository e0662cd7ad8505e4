"""The Agent Description model: W3C Thing Description 1.1 plus the Eclipse LMOS agent terms.

A Thing Description is open-world JSON-LD: any document may carry terms from other contexts.
Every model here therefore keeps unknown members (``extra="allow"``) and serialises only what
was set, so ``AgentDescription.from_dict(doc).to_dict() == doc`` for any valid document.

Member names follow Python style; the JSON names (``@context``, ``contentType``,
``lmos:capabilities``...) are the aliases, and both are accepted when building a model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError
from pydantic.alias_generators import to_camel

from ._errors import DescriptionError, Problem, ValidationError
from ._json import loads_document, pointer_from_path

__all__ = [
    "LMOS_CONTEXT",
    "LMOS_NAMESPACE",
    "PREFIXES",
    "TD10_CONTEXT",
    "TD_CONTEXT",
    "ActionAffordance",
    "AdditionalExpectedResponse",
    "AgentDescription",
    "AgentMetadata",
    "Capability",
    "DataSchema",
    "EventAffordance",
    "ExpectedResponse",
    "Form",
    "InteractionAffordance",
    "Link",
    "PropertyAffordance",
    "SecurityScheme",
    "ThingDescription",
    "Vendor",
    "VersionInfo",
]

TD_CONTEXT = "https://www.w3.org/2022/wot/td/v1.1"
#: The TD 1.0 context: TD 1.1 5.3.1.1 lets it come first, the TD 1.1 context second, "when there
#: are possibly TD 1.0 consumers"; node-wot (0.8 and 0.9) validates with a TD 1.0 schema that
#: refuses a TD whose context starts otherwise.
TD10_CONTEXT = "https://www.w3.org/2019/wot/td/v1"
LMOS_NAMESPACE = "https://eclipse.dev/lmos/protocol/v1"
#: The ``@context`` of every Agent Description the SDK writes: TD 1.0 consumers accept it as is.
LMOS_CONTEXT: list[str | dict[str, str]] = [TD10_CONTEXT, TD_CONTEXT, {"lmos": LMOS_NAMESPACE}]
#: Prefixes of the vocabularies the SDK writes. ``htv`` is defined by the TD 1.1 context itself;
#: ``mqv`` (the MQTT binding template) must be declared by every TD that uses it.
PREFIXES: dict[str, str] = {
    "lmos": LMOS_NAMESPACE,
    "htv": "http://www.w3.org/2011/http#",
    "mqv": "http://www.w3.org/2018/wot/mqtt#",
}

Multilingual = dict[str, str]
StrOrList = str | list[str]


class _Element(BaseModel):
    """Base of every TD element: camelCase JSON names, unknown members kept, only set members dumped."""

    model_config = ConfigDict(
        extra="allow",
        alias_generator=to_camel,
        serialize_by_alias=True,
        validate_by_name=True,
        validate_by_alias=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this element, with exactly the members that were set."""
        return self.model_dump(by_alias=True, exclude_unset=True, mode="json")


class VersionInfo(_Element):
    instance: str | None = None
    model: str | None = None


class ExpectedResponse(_Element):
    content_type: str | None = None


class AdditionalExpectedResponse(_Element):
    success: bool | None = None
    content_type: str | None = None
    schema_: str | None = Field(default=None, alias="schema")


class Form(_Element):
    """Where and how to perform operations on an affordance (one protocol endpoint).

    The HTTP (``htv:``) and MQTT (``mqv:``) binding-template terms are typed here because
    every binding reads them; other protocol terms stay as extra members.
    """

    href: str
    op: StrOrList | None = None
    content_type: str | None = None
    content_coding: str | None = None
    subprotocol: str | None = None
    security: StrOrList | None = None
    scopes: StrOrList | None = None
    response: ExpectedResponse | None = None
    additional_responses: list[AdditionalExpectedResponse] | None = None
    method_name: str | None = Field(default=None, alias="htv:methodName")
    headers: list[dict[str, Any]] | None = Field(default=None, alias="htv:headers")
    mqtt_topic: str | None = Field(default=None, alias="mqv:topic")
    mqtt_filter: str | None = Field(default=None, alias="mqv:filter")
    mqtt_control_packet: str | None = Field(default=None, alias="mqv:controlPacket")
    mqtt_qos: str | None = Field(default=None, alias="mqv:qos")
    mqtt_retain: bool | None = Field(default=None, alias="mqv:retain")

    @property
    def ops(self) -> list[str]:
        """The operation types as a list (``op`` may be a string or an array)."""
        if self.op is None:
            return []
        return [self.op] if isinstance(self.op, str) else list(self.op)


class DataSchema(_Element):
    """A TD data schema: the JSON Schema subset of TD 1.1 (other keywords are kept as extras)."""

    type_: str | None = Field(default=None, alias="@type")
    title: str | None = None
    titles: Multilingual | None = None
    description: str | None = None
    descriptions: Multilingual | None = None
    type: str | None = None
    const: Any = None
    default: Any = None
    unit: str | None = None
    one_of: list[DataSchema] | None = None
    enum: list[Any] | None = None
    read_only: bool | None = None
    write_only: bool | None = None
    format: str | None = None
    content_encoding: str | None = None
    content_media_type: str | None = None
    items: DataSchema | list[DataSchema] | None = None
    min_items: int | None = None
    max_items: int | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    exclusive_minimum: int | float | None = None
    exclusive_maximum: int | float | None = None
    multiple_of: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    properties: dict[str, DataSchema] | None = None
    required: list[str] | None = None


class InteractionAffordance(_Element):
    type_: StrOrList | None = Field(default=None, alias="@type")
    title: str | None = None
    titles: Multilingual | None = None
    description: str | None = None
    descriptions: Multilingual | None = None
    forms: list[Form] = Field(default_factory=list)
    uri_variables: dict[str, DataSchema] | None = None


class PropertyAffordance(InteractionAffordance, DataSchema):
    """A property is both an affordance and the data schema of its value."""

    type_: StrOrList | None = Field(default=None, alias="@type")  # type: ignore[assignment]
    observable: bool | None = None


class ActionAffordance(InteractionAffordance):
    input: DataSchema | None = None
    output: DataSchema | None = None
    safe: bool | None = None
    idempotent: bool | None = None
    synchronous: bool | None = None


class EventAffordance(InteractionAffordance):
    subscription: DataSchema | None = None
    data: DataSchema | None = None
    data_response: DataSchema | None = None
    cancellation: DataSchema | None = None


class SecurityScheme(_Element):
    """One security scheme; which members apply depends on ``scheme`` (TD 1.1 section 5.3.3)."""

    scheme: str
    type_: StrOrList | None = Field(default=None, alias="@type")
    description: str | None = None
    descriptions: Multilingual | None = None
    proxy: str | None = None
    in_: str | None = Field(default=None, alias="in")
    name: str | None = None
    authorization: str | None = None
    alg: str | None = None
    format: str | None = None
    qop: str | None = None
    identity: str | None = None
    token: str | None = None
    refresh: str | None = None
    scopes: StrOrList | None = None
    flow: str | None = None
    one_of: list[str] | None = None
    all_of: list[str] | None = None


class Link(_Element):
    href: str
    type: str | None = None
    rel: str | None = None
    anchor: str | None = None
    sizes: str | None = None
    hreflang: StrOrList | None = None


class Vendor(_Element):
    name: str | None = Field(default=None, alias="lmos:name")
    url: str | None = Field(default=None, alias="lmos:url")


class AgentMetadata(_Element):
    """``lmos:metadata``: who provides the agent; other ``lmos:`` metadata members are kept."""

    vendor: Vendor | None = Field(default=None, alias="lmos:vendor")


class Capability(_Element):
    """One capability an agent offers, with example utterances that routers learn from."""

    id: str
    name: str | None = None
    version: str | None = None
    description: str | None = None
    examples: list[str] = Field(default_factory=list)


class ThingDescription(_Element):
    """The W3C Thing Description 1.1 information model (section 5.3.1, class ``Thing``)."""

    context: str | list[str | dict[str, Any]] = Field(alias="@context")
    type_: StrOrList | None = Field(default=None, alias="@type")
    id: str | None = None
    title: str
    titles: Multilingual | None = None
    description: str | None = None
    descriptions: Multilingual | None = None
    version: VersionInfo | None = None
    created: str | None = None
    modified: str | None = None
    support: str | None = None
    base: str | None = None
    properties: dict[str, PropertyAffordance] | None = None
    actions: dict[str, ActionAffordance] | None = None
    events: dict[str, EventAffordance] | None = None
    links: list[Link] | None = None
    forms: list[Form] | None = None
    security: StrOrList
    security_definitions: dict[str, SecurityScheme]
    profile: StrOrList | None = None
    schema_definitions: dict[str, DataSchema] | None = None
    uri_variables: dict[str, DataSchema] | None = None

    _kind: ClassVar[str] = "Thing Description"

    @property
    def types(self) -> list[str]:
        """``@type`` as a list (it may be a string or an array in JSON)."""
        if self.type_ is None:
            return []
        return [self.type_] if isinstance(self.type_, str) else list(self.type_)

    def affordances(self) -> Iterator[tuple[str, str, InteractionAffordance]]:
        """Every affordance as ``(kind, name, affordance)``, kind being property, action or event."""
        for kind, table in (("property", self.properties), ("action", self.actions), ("event", self.events)):
            for name, affordance in (table or {}).items():
                yield kind, name, affordance

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Self:
        """Build the model from a parsed JSON object; shape errors become a ``ValidationError``.

        This checks the shape the model needs, not the whole TD schema: use
        :func:`wot_agents.validate` for that.
        """
        try:
            return cls.model_validate(document)
        except PydanticValidationError as exc:
            problems = [Problem(pointer_from_path(error["loc"]), error["msg"]) for error in exc.errors()]
            raise ValidationError(problems) from None

    @classmethod
    def from_json(cls, data: str | bytes, *, max_bytes: int | None = None) -> Self:
        """Parse JSON text into the model; broken JSON is a ``DescriptionError`` with its position."""
        document = loads_document(data, max_bytes=max_bytes)
        if not isinstance(document, dict):
            raise DescriptionError(f"a {cls._kind} must be a JSON object, not {type(document).__name__}")
        return cls.from_dict(document)

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


class AgentDescription(ThingDescription):
    """A Thing Description that may carry the Eclipse LMOS agent vocabulary.

    Plain TDs parse too: the LMOS members are optional, and :attr:`is_agent` tells whether the
    document declares itself an ``lmos:Agent``. This is the one description type used across
    wot-agents.
    """

    metadata: AgentMetadata | None = Field(default=None, alias="lmos:metadata")
    capabilities: list[Capability] | None = Field(default=None, alias="lmos:capabilities")
    supported_tenants: list[str] | None = Field(default=None, alias="lmos:supportedTenants")
    supported_channels: list[str] | None = Field(default=None, alias="lmos:supportedChannels")
    subset: str | None = Field(default=None, alias="lmos:subset")

    _kind: ClassVar[str] = "Agent Description"

    @property
    def is_agent(self) -> bool:
        return "lmos:Agent" in self.types or f"{LMOS_NAMESPACE}Agent" in self.types

    @property
    def kind(self) -> Literal["agent", "tool", "thing"]:
        if self.is_agent:
            return "agent"
        if "lmos:Tool" in self.types:
            return "tool"
        return "thing"
