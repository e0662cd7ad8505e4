"""Validation of Thing and Agent Descriptions against the shipped JSON Schemas.

Three schemas apply, all from ``td_schemas``:

- the official W3C TD 1.1 JSON Schema, to every document;
- the WoT Discovery extension schema, to documents carrying a ``registration`` object;
- the wot-agents Agent Description schema, to the ``lmos:`` terms and ``signatures``.

The validators are compiled once (jsonschema-rs, a Rust implementation: ~0.01 ms per TD against
~3 ms for the pure-Python jsonschema; see ``bench/validation.py``), which makes validating on
every directory write affordable. Every problem is reported, each with a JSON Pointer.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import jsonschema_rs

import td_schemas

from ._errors import DescriptionError, Problem, ValidationError
from ._json import loads_document, pointer_from_path

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

    Problems are sorted by pointer so the output is stable across runs.
    """
    if not isinstance(document, Mapping):
        return [Problem("", f"a Thing Description must be a JSON object, not {type(document).__name__}")]
    problems = _problems("td", document)
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
    return validate(document)


def check(document: Any, *, source: str | None = None) -> None:
    """Raise :class:`ValidationError` listing every problem unless the document is valid."""
    problems = validate(document)
    if problems:
        raise ValidationError(problems, source=source)
