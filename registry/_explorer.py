"""The explorer: the directory's own browser page (``/explorer``), and ``/`` for browsers.

The page (``registry/explorer/``) only calls the directory's public API (listing, the searches,
the events stream), plus :func:`validate_td`, which checks a pasted description the way a
registration would and says on which line each problem is. ``/`` stays the directory's TD for
every WoT client; only a browser asking for ``text/html`` is shown the explorer there.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Literal

from aiohttp import web

from wot_agents import DescriptionError, validate
from wot_agents._json import loads_document
from wot_agents._json_positions import json_positions, position_of
from wot_agents._pages import PageFiles, prefers_html, shared_pages

from ._problems import HTTPProblem, validation_problem

__all__ = ["EXPLORER_ROUTES", "negotiated_root"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_TD_TYPES = ("application/td+json", "application/json", "application/ld+json")


@cache
def _pages() -> PageFiles:
    return shared_pages("registry", "explorer")


async def explorer(request: web.Request) -> web.Response:
    return _pages().response(request, "index.html")


async def explorer_file(request: web.Request) -> web.Response:
    return _pages().response(request, request.match_info["name"])


def negotiated_root(td_handler: Handler) -> Handler:
    """``/``: the explorer for a browser asking for HTML, otherwise ``td_handler`` (the TD)."""

    async def root(request: web.Request) -> web.StreamResponse:
        if prefers_html(request.headers.get("Accept", ""), *_TD_TYPES):
            response: web.StreamResponse = _pages().response(request, "index.html")
        else:
            response = await td_handler(request)
        response.headers["Vary"] = "Accept"
        return response

    root.__name__ = "root"
    return root


async def validate_td(request: web.Request) -> web.Response:
    """``POST /explorer/validate``: the problems a registration of the body would meet.

    200 ``{"valid": true}`` when there is none; otherwise the 400 problem+json a ``PUT`` would
    get (``validationErrors`` with ``field`` and ``description``), each error with its JSON
    ``pointer`` and the ``line`` and ``column`` where it starts in the text sent.
    """
    text = await request.text()
    try:
        document = loads_document(text)  # the body is within the directory's max_body already
    except DescriptionError as exc:
        line, column = _syntax_position(text)
        raise HTTPProblem(
            400,
            "The input is not a JSON document",
            validationErrors=[
                {"field": "(root)", "description": str(exc), "pointer": "", "line": line, "column": column}
            ],
        ) from None
    problems = validate(document)
    if not problems:
        return web.json_response({"valid": True})
    positions = json_positions(text)
    raise validation_problem(problems, lambda pointer: position_of(positions, pointer))


def _syntax_position(text: str) -> tuple[int, int]:
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        return exc.lineno, exc.colno
    except ValueError:
        pass
    return 1, 1


#: The explorer's routes, in the directory's route table format (method, path, handler, access).
EXPLORER_ROUTES: tuple[tuple[str, str, Handler, Literal["open", "read", "write"]], ...] = (
    ("GET", "/explorer", explorer, "open"),
    ("POST", "/explorer/validate", validate_td, "open"),
    ("GET", "/explorer/{name}", explorer_file, "open"),
)
