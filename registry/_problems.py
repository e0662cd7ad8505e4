"""The directory's problem details: the SDK's one RFC 7807 home, plus what WoT Discovery adds.

Handlers raise :class:`HTTPProblem` (``wot_agents._problem``); the middleware also turns aiohttp's
own errors (404 for an unknown route, 405, 413 for a body over the limit...) into
``application/problem+json`` with ``status`` equal to the HTTP status and ``title`` the standard
reason phrase (7.3.2). Only the ``validationErrors`` member of a refused TD is the directory's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from wot_agents import Problem
from wot_agents._problem import Handler, HTTPProblem
from wot_agents._problem import problem_middleware as _problem_middleware

__all__ = ["HTTPProblem", "Handler", "problem_middleware", "validation_problem"]

logger = logging.getLogger("registry")

#: Unexpected errors are logged with their traceback, and not shown to the client.
problem_middleware = _problem_middleware(
    logger, internal_detail="The directory failed unexpectedly; the error is in its log."
)


def _field(pointer: str) -> str:
    # The spec's example names fields like "properties.status.forms.0.href" and the root "(root)".
    if not pointer:
        return "(root)"
    return ".".join(token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/"))


def validation_problem(
    problems: list[Problem], positions: Callable[[str], tuple[int, int]] | None = None
) -> HTTPProblem:
    """The 400 of a refused TD; with ``positions`` (pointer -> line, column in the text sent) each
    error also carries its ``pointer``, ``line`` and ``column``, for people editing the text."""
    errors: list[dict[str, Any]] = []
    for p in problems:
        error: dict[str, Any] = {"field": _field(p.pointer), "description": p.message}
        if positions is not None:
            error["pointer"] = p.pointer
            error["line"], error["column"] = positions(p.pointer)
        errors.append(error)
    return HTTPProblem(400, "The input did not pass the JSON Schema validation", validationErrors=errors)
