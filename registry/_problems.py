"""RFC 7807 problem details: the one place HTTP errors of the directory are shaped.

Handlers raise :class:`HTTPProblem`; the middleware also turns aiohttp's own errors (404 for an
unknown route, 405, 413 for a body over the limit...) into ``application/problem+json`` with
``status`` equal to the HTTP status and ``title`` the standard reason phrase (7.3.2).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web

from wot_agents import Problem

__all__ = ["HTTPProblem", "problem_middleware", "problem_response", "validation_problem"]

PROBLEM_JSON = "application/problem+json"
logger = logging.getLogger("registry")


class HTTPProblem(Exception):
    """An error answer: status, a sentence saying what went wrong, extension members, headers."""

    def __init__(
        self, status: int, detail: str, *, headers: Mapping[str, str] | None = None, **extensions: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = extensions


def problem_response(
    status: int, detail: str | None = None, *, headers: Mapping[str, str] | None = None, **extensions: Any
) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extensions)
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        content_type=PROBLEM_JSON,
        charset="utf-8",
        headers=headers,
    )


def _field(pointer: str) -> str:
    # The spec's example names fields like "properties.status.forms.0.href" and the root "(root)".
    if not pointer:
        return "(root)"
    return ".".join(token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/"))


def validation_problem(problems: list[Problem]) -> HTTPProblem:
    return HTTPProblem(
        400,
        "The input did not pass the JSON Schema validation",
        validationErrors=[{"field": _field(p.pointer), "description": p.message} for p in problems],
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HTTPProblem as exc:
        return problem_response(exc.status, exc.detail, headers=exc.headers, **exc.extensions)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {
            k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate", "retry-after")
        }
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else None
        return problem_response(exc.status, detail, headers=headers)
    except Exception:
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return problem_response(500, "The directory failed unexpectedly; the error is in its log.")
