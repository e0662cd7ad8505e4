"""Validation of Thing and Agent Descriptions against the shipped JSON Schemas.

Three schemas apply, all from ``td_schemas``:

- the official W3C TD 1.1 JSON Schema, to every document;
- the WoT Discovery extension schema, to documents carrying a ``registration`` object;
- the wot-agents Agent Description schema, to the ``lmos:`` terms and ``signatures``.

The validators are compiled once (jsonschema-rs, a Rust implementation: ~0.01 ms per TD against
~3 ms for the pure-Python jsonschema; see ``bench/validation.py``), which makes validating on
every directory write affordable. Every problem is reported, each with a JSON Pointer.

Then the TD 1.1 rules a JSON Schema cannot express, as other validators (the Eclipse Thingweb
playground's additional checks) assert them: every name in ``security``, at Thing and at form
level, and in a ``combo`` scheme's ``oneOf``/``allOf``, is a key of ``securityDefinitions``
(TD 1.1 5.3.1.1, 5.3.4.2, 5.3.3.2); at most one link has ``rel: "type"`` (the Thing Model it
instantiates, 9.3.2); and, in JSON text, no object repeats a member name (RFC 8259 4; a parser
keeps one, silently).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import jsonschema_rs

import td_schemas

from ._errors import DescriptionError, Problem, ValidationError
from ._json import duplicate_members, loads_document, pointer_from_path

__all__ = ["check", "validate", "validate_json"]


@cache
def _validator(name: str) -> Any:
    # Formats are asserted (date-time, uri...) as the TD schema intends them to be.
    return jsonschema_rs.validator_for(td_schemas.load(td_schemas.SCHEMA_FILES[name]), validate_formats=True)


def _problems(name: str, document: Any) -> list[Problem]:
    return [
        Problem(pointer_from_path(error.instance_path), error.message)
        for error in _validator(name).iter_errors(document)
    ]


def validate(document: Any) -> list[Problem]:
    """Every schema problem of a parsed document; an empty list means it is valid.

    Problems are sorted by pointer so the output is stable across runs. An
    :class:`~wot_agents.AgentDescription` (any TD model) is validated as the document it dumps to.
    """
    if not isinstance(document, Mapping) and callable(getattr(document, "to_dict", None)):
        document = document.to_dict()
    if not isinstance(document, Mapping):
        return [Problem("", f"a Thing Description must be a JSON object, not {type(document).__name__}")]
    problems = _problems("td", document) + _rules(document)
    if "registration" in document:
        problems += _problems("discovery", document)
    if "signatures" in document or any(isinstance(key, str) and key.startswith("lmos:") for key in document):
        problems += _problems("agent", document)
    return sorted(set(problems), key=lambda problem: (problem.pointer, problem.message))


def validate_json(data: str | bytes, *, max_bytes: int | None = None) -> list[Problem]:
    """Like :func:`validate` for JSON text; unparsable text is one problem at the root."""
    try:
        document = loads_document(data, max_bytes=max_bytes)
    except DescriptionError as exc:
        return [Problem("", str(exc))]
    repeated = [Problem(pointer, _REPEATED) for pointer in duplicate_members(data)]
    return sorted(validate(document) + repeated, key=lambda problem: (problem.pointer, problem.message))


_REPEATED = "this member name appears more than once in its object (only one of them would be kept)"
_AFFORDANCES = ("properties", "actions", "events")


def _names(value: Any) -> list[tuple[str, str]]:
    """``(name, pointer suffix)`` of a ``security`` value: a string or an array of strings."""
    if isinstance(value, str):
        return [(value, "")]
    if isinstance(value, list):
        return [(name, f"/{i}") for i, name in enumerate(value) if isinstance(name, str)]
    return []


def _rules(td: Mapping[str, Any]) -> list[Problem]:
    """The assertions a schema cannot check (see the module's docstring); a Thing Model, whose
    definitions may come from elsewhere, is left alone."""
    types = td.get("@type")
    if "tm:ThingModel" in (types if isinstance(types, list) else [types]):
        return []
    problems: list[Problem] = []
    definitions = td.get("securityDefinitions")
    defined = set(definitions) if isinstance(definitions, Mapping) else set()

    def check_names(value: Any, path: tuple[str | int, ...]) -> None:
        for name, suffix in _names(value):
            if name not in defined:
                problems.append(
                    Problem(
                        pointer_from_path(path) + suffix, f"{name!r} is not defined in securityDefinitions"
                    )
                )

    check_names(td.get("security"), ("security",))
    for scheme_name, scheme in definitions.items() if isinstance(definitions, Mapping) else ():
        if isinstance(scheme, Mapping) and scheme.get("scheme") == "combo":
            for key in ("oneOf", "allOf"):
                check_names(scheme.get(key), ("securityDefinitions", scheme_name, key))
    forms: list[tuple[Any, tuple[str | int, ...]]] = [(td.get("forms"), ("forms",))]
    for kind in _AFFORDANCES:
        affordances = td.get(kind)
        for name, affordance in affordances.items() if isinstance(affordances, Mapping) else ():
            if isinstance(affordance, Mapping):
                forms.append((affordance.get("forms"), (kind, name, "forms")))
    for form_list, path in forms:
        for i, form in enumerate(form_list if isinstance(form_list, list) else []):
            if isinstance(form, Mapping) and "security" in form:
                check_names(form["security"], (*path, i, "security"))
    links = td.get("links")
    typed = [
        i for i, link in enumerate(links if isinstance(links, list) else []) if isinstance(link, Mapping)
        and link.get("rel") == "type"
    ]  # fmt: skip
    for i in typed[1:]:
        problems.append(
            Problem(pointer_from_path(("links", i, "rel")), 'a TD has at most one link with rel "type"')
        )
    return problems


def check(document: Any, *, source: str | None = None) -> None:
    """Raise :class:`ValidationError` listing every problem unless the document is valid."""
    problems = validate(document)
    if problems:
        raise ValidationError(problems, source=source)
