"""RFC 7807 problem details: the one home of the problem+json every wot-agents server answers.

Every server (an agent's HTTP and WebSocket bindings, its MQTT replies, the directory, the
runtime) shapes its errors here, and every client (the bindings' clients, ``DirectoryClient``)
reads them back here, so a problem means the same thing on every wire::

    # a server: raise, and the middleware answers application/problem+json
    app = web.Application(middlewares=[problem_middleware(log)])
    raise HTTPProblem(404, f"no agent {name!r}")

    # anything that is not a web response (an MQTT reply, an LMOS error message)
    problem = ProblemDetails.from_exception(exc)      # the one error -> status mapping
    payload = problem.to_json()

    # a client
    problem = ProblemDetails.from_body(await response.read(), status=response.status)
    raise RemoteError(problem.message, status=problem.status, problem=problem.to_dict())

:data:`ERROR_STATUSES` is the one mapping from the error tree (``wot_agents._errors``) to HTTP
statuses. With the default type ``about:blank`` the title is the status's reason phrase, as
RFC 7807 (4.2) recommends; what went wrong goes into ``detail``. A remote problem is carried on
the error tree as ``.problem`` (a dict: the document as received, extension members included).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from ._errors import (
    AccessDenied,
    AnnouncementError,
    ConnectError,
    DescriptionError,
    DirectoryError,
    DirectoryNotFound,
    DiscoveryError,
    InteractionError,
    JsonLdError,
    NoSuitableFormError,
    PayloadError,
    RequestTimeout,
    RoutingError,
    ValidationError,
    WotAgentsError,
)

__all__ = [
    "ERROR_STATUSES",
    "PROBLEM_JSON",
    "HTTPProblem",
    "Handler",
    "ProblemDetails",
    "problem_middleware",
]

#: The media type of a problem details document (RFC 7807, 3).
PROBLEM_JSON = "application/problem+json"

#: How much of a body that is not a problem document is kept as its ``detail``.
_MAX_FOREIGN_DETAIL = 500

#: The error tree onto HTTP statuses, most specific first (the first ``isinstance`` match wins).
#: Bad input is 4xx; a failure of something this server depends on (an agent, a directory, an
#: LLM) is 502/503/504, so a caller can tell "you asked wrongly" from "retry later".
ERROR_STATUSES: tuple[tuple[type[BaseException], int], ...] = (
    (AccessDenied, 403),  # the caller may not use this affordance (wot_agents.trust)
    (PayloadError, 400),  # a payload that does not match its data schema
    (ValidationError, 400),  # a TD that breaks the schemas
    (DescriptionError, 400),  # not a usable TD
    (JsonLdError, 400),  # a document whose JSON-LD cannot be processed
    (AnnouncementError, 400),
    (RequestTimeout, 504),  # the agent behind this server did not answer in time
    (ConnectError, 502),  # ... could not be reached
    (NoSuitableFormError, 502),  # ... has no form this server can use
    (InteractionError, 502),  # ... answered with an error (RemoteError)
    (DirectoryNotFound, 503),  # no directory announced itself (yet)
    (DirectoryError, 502),  # the directory behind this server failed
    (DiscoveryError, 503),
    (RoutingError, 503),  # the router (its embedder, its LLM) could not decide now
    (TimeoutError, 504),
)

_KNOWN_MEMBERS = ("type", "title", "status", "detail", "instance")
#: Headers of an aiohttp error that still mean something on the problem answer.
_KEPT_HEADERS = ("allow", "www-authenticate", "retry-after")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


@dataclass(frozen=True, slots=True)
class ProblemDetails:
    """One RFC 7807 problem: ``status``, ``title``, ``detail``, ``type``, ``instance``, extensions.

    ``title`` defaults to the reason phrase of ``status``; ``extensions`` holds every other member
    (e.g. ``problems`` for a payload that breaks its schema, ``validationErrors`` for a TD that
    the directory refuses).
    """

    status: int
    detail: str | None = None
    title: str = ""
    type: str = "about:blank"
    instance: str | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.title:
            object.__setattr__(self, "title", _phrase(self.status))

    @property
    def message(self) -> str:
        """One line for an error message: the detail, else the title."""
        return self.detail or self.title

    def to_dict(self) -> dict[str, Any]:
        """The JSON object; extension members never override the standard ones."""
        body: dict[str, Any] = {
            **self.extensions,
            "type": self.type,
            "title": self.title,
            "status": self.status,
        }
        if self.detail:
            body["detail"] = self.detail
        if self.instance:
            body["instance"] = self.instance
        return body

    def to_json(self) -> bytes:
        """The UTF-8 JSON body of an ``application/problem+json`` message."""
        return json.dumps(self.to_dict(), ensure_ascii=False).encode("utf-8")

    def response(self, *, headers: Mapping[str, str] | None = None) -> web.Response:
        """An aiohttp response carrying this problem, with ``status`` as the HTTP status."""
        return web.Response(
            status=self.status,
            body=self.to_json(),
            content_type=PROBLEM_JSON,
            charset="utf-8",
            headers=headers,
        )

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], *, status: int | None = None) -> ProblemDetails:
        """Read a problem document leniently: wrong-typed members are dropped, not trusted.

        ``status`` (the status of the message that carried it) wins over the document's own
        member, which RFC 7807 makes advisory.
        """
        given = document.get("status")
        if status is None:
            status = given if isinstance(given, int) and 100 <= given <= 599 else 500
        title, detail, kind, instance = (document.get(k) for k in ("title", "detail", "type", "instance"))
        return cls(
            status=status,
            title=title if isinstance(title, str) else "",
            detail=detail if isinstance(detail, str) else None if detail is None else json.dumps(detail),
            type=kind if isinstance(kind, str) and kind else "about:blank",
            instance=instance if isinstance(instance, str) else None,
            extensions={k: v for k, v in document.items() if k not in _KNOWN_MEMBERS},
        )

    @classmethod
    def from_body(
        cls, body: bytes | str, *, status: int | None = None, reason: str | None = None
    ) -> ProblemDetails:
        """The problem an error answer carries, whatever the server put in its body.

        A JSON object is read as a problem document; anything else (an HTML error page, plain
        text, a JSON scalar) becomes the ``detail`` (cut to 500 characters), or ``reason`` (the
        status line's phrase) when the body is empty.
        """
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        try:
            parsed = json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            return cls.from_dict(parsed, status=status)
        if parsed is not None and not isinstance(parsed, str):
            text = json.dumps(parsed)
        elif isinstance(parsed, str):
            text = parsed
        return cls(status=status or 500, detail=text.strip()[:_MAX_FOREIGN_DETAIL] or reason or None)

    @classmethod
    def from_exception(cls, exc: BaseException, *, internal_detail: str | None = None) -> ProblemDetails:
        """The problem that answers ``exc``: the one mapping from the error tree to statuses.

        :class:`HTTPProblem` and aiohttp's own HTTP errors keep their status; the error tree maps
        through :data:`ERROR_STATUSES` (a payload or schema failure lists its ``problems``);
        anything else is a 500 whose detail is ``internal_detail`` when given (a service that
        must not show its internals), else the exception's type and message.
        """
        if isinstance(exc, HTTPProblem):
            return exc.problem
        if isinstance(exc, web.HTTPException):
            default = f"{exc.status}: {exc.reason}"
            text = (
                exc.text
                if exc.text and exc.text != default and not exc.text.startswith(f"{exc.status}:")
                else None
            )
            return cls(status=exc.status, detail=text)
        for kind, status in ERROR_STATUSES:
            if isinstance(exc, kind):
                extensions: dict[str, Any] = {}
                listed = getattr(exc, "problems", None)
                if listed:
                    extensions["problems"] = [{"pointer": p.pointer, "message": p.message} for p in listed]
                return cls(status=status, detail=str(exc) or type(exc).__name__, extensions=extensions)
        detail = internal_detail if internal_detail is not None else f"{type(exc).__name__}: {exc}"
        return cls(status=500, detail=detail)


class HTTPProblem(WotAgentsError):
    """Raise inside a handler to answer with a problem: status, detail, extension members, headers.

    ``problem_middleware`` turns it into the response; ``title`` defaults to the reason phrase.
    """

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str = "",
        type: str = "about:blank",
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or _phrase(status))
        self.problem = ProblemDetails(status, detail, title=title, type=type, extensions=extensions)
        self.headers = dict(headers or {})

    @property
    def status(self) -> int:
        return self.problem.status

    @property
    def detail(self) -> str | None:
        return self.problem.detail

    def response(self) -> web.Response:
        return self.problem.response(headers=self.headers)


#: An aiohttp request handler, as middlewares see it.
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_middleware(logger: logging.Logger, *, internal_detail: str | None = None) -> Middleware:
    """An aiohttp middleware answering every error with problem+json (``ProblemDetails.from_exception``).

    aiohttp's own errors (404 for an unknown route, 405, 413 for a body over the limit) keep their
    status and the headers that still apply (``Allow``, ``WWW-Authenticate``, ``Retry-After``);
    an unexpected exception is logged with its traceback on ``logger`` and answered 500, with
    ``internal_detail`` as the detail when the service must not show its internals.
    """

    @web.middleware
    async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except HTTPProblem as exc:
            return exc.response()
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k.lower() in _KEPT_HEADERS}
            return ProblemDetails.from_exception(exc).response(headers=headers)
        except Exception as exc:
            problem = ProblemDetails.from_exception(exc, internal_detail=internal_detail)
            if not any(isinstance(exc, kind) for kind, _ in ERROR_STATUSES):
                logger.exception("%s %s failed", request.method, request.path)
            elif problem.status >= 500:
                logger.warning("%s %s failed: %s", request.method, request.path, exc)
            return problem.response()

    return problems
