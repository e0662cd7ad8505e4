"""The one home of problem+json: the error tree -> status mapping, bodies both ways, the middleware."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from wot_agents import (
    PROBLEM_JSON,
    ConnectError,
    DirectoryNotFound,
    HTTPProblem,
    PayloadError,
    Problem,
    ProblemDetails,
    RequestTimeout,
    RoutingError,
    ValidationError,
    problem_middleware,
    serve_app,
)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (PayloadError("bad", problems=[Problem("/a", "not a number")]), 400),
        (ValidationError([Problem("/title", "required")]), 400),
        (RequestTimeout("slow"), 504),
        (ConnectError("refused"), 502),
        (DirectoryNotFound("none yet"), 503),
        (RoutingError("no embedder"), 503),
        (HTTPProblem(409, "busy"), 409),
        (web.HTTPNotFound(), 404),
        (KeyError("surprise"), 500),
    ],
)
def test_the_error_tree_maps_onto_statuses(error: BaseException, status: int) -> None:
    problem = ProblemDetails.from_exception(error)
    assert problem.status == status
    assert problem.title  # the reason phrase with type about:blank (RFC 7807, 4.2)
    assert problem.to_dict()["status"] == status


def test_schema_problems_are_listed() -> None:
    problem = ProblemDetails.from_exception(PayloadError("bad", problems=[Problem("/a", "not a number")]))
    assert problem.to_dict()["problems"] == [{"pointer": "/a", "message": "not a number"}]


def test_an_unexpected_error_hides_its_internals_when_asked() -> None:
    shown = ProblemDetails.from_exception(KeyError("secret"))
    hidden = ProblemDetails.from_exception(KeyError("secret"), internal_detail="see the log")
    assert "secret" in (shown.detail or "") and hidden.detail == "see the log"


def test_a_problem_round_trips_through_its_body() -> None:
    problem = ProblemDetails(404, "no thing 'x'", instance="urn:x", extensions={"hint": [1, 2]})
    again = ProblemDetails.from_body(problem.to_json(), status=404)
    assert again == problem
    assert again.title == "Not Found" and again.message == "no thing 'x'"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"<html>gateway down</html>", "<html>gateway down</html>"),
        (b'"just a string"', "just a string"),
        (b"[1, 2]", "[1, 2]"),
        (b"", "Bad Gateway"),
    ],
)
def test_a_foreign_body_becomes_the_detail(body: bytes, detail: str) -> None:
    problem = ProblemDetails.from_body(body, status=502, reason="Bad Gateway")
    assert problem.status == 502 and problem.detail == detail


def test_wrong_typed_members_are_not_trusted() -> None:
    problem = ProblemDetails.from_body(b'{"status": "teapot", "title": 5, "type": null, "detail": "x"}')
    assert (
        problem.status == 500 and problem.title == "Internal Server Error" and problem.type == "about:blank"
    )
    assert problem.detail == "x"


def test_extensions_do_not_override_the_standard_members() -> None:
    problem = ProblemDetails(400, "x", extensions={"status": 200, "title": "OK"})
    assert problem.to_dict()["status"] == 400 and problem.to_dict()["title"] == "Bad Request"


@pytest.fixture
async def app_url() -> AsyncIterator[str]:
    async def refuse(request: web.Request) -> web.Response:
        raise HTTPProblem(409, "already running", headers={"Retry-After": "3"}, running=["a"])

    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("internal state")

    async def late(request: web.Request) -> web.Response:
        raise RequestTimeout("the agent did not answer")

    app = web.Application(
        middlewares=[problem_middleware(logging.getLogger("test"), internal_detail="logged")]
    )
    app.router.add_get("/refuse", refuse)
    app.router.add_get("/crash", crash)
    app.router.add_get("/late", late)
    async with serve_app(app) as url:
        yield url


async def test_the_middleware_answers_problem_json(app_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(app_url + "/refuse") as response:
            assert response.status == 409 and response.content_type == PROBLEM_JSON
            assert response.headers["Retry-After"] == "3"
            body = await response.json(content_type=PROBLEM_JSON)
            assert body == {
                "type": "about:blank",
                "title": "Conflict",
                "status": 409,
                "detail": "already running",
                "running": ["a"],
            }
        async with session.get(app_url + "/crash") as response:
            body = await response.json(content_type=PROBLEM_JSON)
            assert response.status == 500 and body["detail"] == "logged"
        async with session.get(app_url + "/late") as response:
            assert response.status == 504
        async with session.post(app_url + "/refuse") as response:  # aiohttp's own 405
            body = await response.json(content_type=PROBLEM_JSON)
            assert response.status == 405 and body["title"] == "Method Not Allowed"
            assert "GET" in response.headers["Allow"]
        async with session.get(app_url + "/nowhere") as response:
            assert response.status == 404 and response.content_type == PROBLEM_JSON
