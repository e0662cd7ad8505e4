"""TD data schemas from Python type hints, and validation of payloads against them.

pydantic writes the JSON Schema of a type; a TD data schema is a subset of JSON Schema without
``$ref``, so references are inlined here. A recursive type cannot be inlined and is refused with
a clear error rather than producing a schema no TD consumer can read.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model
from pydantic import ValidationError as PydanticValidationError
from pydantic.json_schema import GenerateJsonSchema

from ._errors import PayloadError, Problem
from ._json import pointer_from_path

__all__ = ["Codec", "schema_of", "signature_codec"]


class _NoFieldTitles(GenerateJsonSchema):
    """pydantic titles every field after its name ("City"); in a TD that is noise, so leave them out."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _inline(node: Any, definitions: Mapping[str, Any], trail: tuple[str, ...] = ()) -> Any:
    if isinstance(node, list):
        return [_inline(item, definitions, trail) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name in trail:
            raise TypeError(f"type {name} refers to itself; a TD data schema cannot express recursion")
        target = _inline(definitions[name], definitions, (*trail, name))
        return {**target, **{key: value for key, value in node.items() if key != "$ref"}}
    inlined = {key: _inline(value, definitions, trail) for key, value in node.items() if key != "$defs"}
    # Optional[X] is anyOf [X, null]: the branches exclude each other, so it is a TD oneOf.
    branches = inlined.get("anyOf")
    if isinstance(branches, list) and {"type": "null"} in branches:
        inlined["oneOf"] = inlined.pop("anyOf")
    return inlined


def schema_of(annotation: Any) -> dict[str, Any]:
    """The TD data schema (a JSON object) of a Python type."""
    if annotation is Any:
        return {}
    schema = TypeAdapter(annotation).json_schema(schema_generator=_NoFieldTitles, mode="serialization")
    return _inline(schema, schema.get("$defs", {}))  # type: ignore[no-any-return]


def _problems(exc: PydanticValidationError, prefix: tuple[str | int, ...] = ()) -> list[Problem]:
    return [Problem(pointer_from_path((*prefix, *error["loc"])), error["msg"]) for error in exc.errors()]


@dataclass(frozen=True, slots=True)
class Codec:
    """Checks values going in and out of one affordance and turns them into JSON-able data."""

    adapter: TypeAdapter[Any] | None
    what: str

    def load(self, raw: Any) -> Any:
        """Validate a value from the wire (JSON data); raises ``PayloadError`` listing every problem.

        Strictly, as the published schema says: JSON ``true`` or ``"3"`` is not an integer (pydantic's
        lax mode would take both as one), while what JSON cannot carry (dates, enums, tuples) is
        read from its JSON form. A number with no fractional part is an integer, as in JSON Schema.
        """
        if self.adapter is None:
            return raw
        try:
            return self.adapter.validate_json(json.dumps(_integral(raw)), strict=True)
        except PydanticValidationError as exc:
            raise PayloadError(f"invalid {self.what}", problems=_problems(exc)) from None
        except (TypeError, ValueError) as exc:  # not JSON data at all (a Python object)
            raise PayloadError(f"invalid {self.what}: {exc}") from None

    def coerce(self, value: Any) -> Any:
        """A value given by the agent's own code (a default), converted leniently."""
        if self.adapter is None:
            return value
        try:
            return self.adapter.validate_python(value)
        except PydanticValidationError as exc:
            raise PayloadError(f"invalid {self.what}", problems=_problems(exc)) from None

    def dump(self, value: Any) -> Any:
        """The JSON data of a value produced by the agent's code."""
        if self.adapter is None:
            return value
        try:
            return self.adapter.dump_python(self.adapter.validate_python(value), mode="json")
        except PydanticValidationError as exc:
            problems = _problems(exc)
            raise PayloadError(f"the agent produced an invalid {self.what}", problems=problems) from None


def _integral(value: Any) -> Any:
    """JSON data with every float that has no fractional part written as an integer (``3.0`` -> ``3``)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, list):
        return [_integral(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    return value


def codec(annotation: Any, what: str) -> Codec:
    return Codec(None if annotation is Any else TypeAdapter(annotation), what)


@dataclass(frozen=True, slots=True)
class SignatureCodec:
    """How a function's parameters map onto an action's input.

    One parameter typed with a model (pydantic model, dataclass, TypedDict) takes the whole input;
    otherwise the input is an object whose members are the parameters (required when they have
    no default); no parameters means no input.
    """

    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    call: Callable[[Callable[..., Any], Any], Any]
    output: Codec


def _is_model(annotation: Any) -> bool:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return True
    is_dataclass = bool(getattr(annotation, "__dataclass_fields__", None))
    return is_dataclass or getattr(annotation, "__total__", None) is not None  # TypedDict


def signature_codec(function: Callable[..., Any], name: str) -> SignatureCodec:
    hints = get_type_hints(function, include_extras=True)
    parameters = [
        parameter
        for parameter in inspect.signature(function).parameters.values()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]
    returns = hints.get("return", Any)
    output = codec(Any if returns is None or returns is type(None) else returns, f"output of action {name!r}")
    output_schema = None if returns is None or returns is type(None) else schema_of(returns)

    if not parameters:
        return SignatureCodec(None, output_schema, lambda func, raw: func(), output)

    if len(parameters) == 1 and _is_model(hints.get(parameters[0].name)):
        model = hints[parameters[0].name]
        whole = codec(model, f"input of action {name!r}")
        input_schema = schema_of(model)
        return SignatureCodec(input_schema, output_schema, lambda func, raw: func(whole.load(raw)), output)

    fields: dict[str, Any] = {
        parameter.name: (
            hints.get(parameter.name, Any),
            ... if parameter.default is inspect.Parameter.empty else parameter.default,
        )
        for parameter in parameters
    }
    arguments = create_model(f"{name}_input", __config__=ConfigDict(extra="forbid"), **fields)
    members = codec(arguments, f"input of action {name!r}")

    def call(func: Callable[..., Any], raw: Any) -> Any:
        loaded = members.load({} if raw is None else raw)
        return func(**{parameter.name: getattr(loaded, parameter.name) for parameter in parameters})

    input_schema = schema_of(arguments)
    input_schema.pop("title", None)  # the generated model's name means nothing to a consumer
    return SignatureCodec(input_schema, output_schema, call, output)
