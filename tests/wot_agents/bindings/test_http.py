"""HTTP binding specifics: methods, status codes, problem details, long-running actions, CORS."""

from __future__ import annotations

import asyncio
import io

import aiohttp
import pytest

from tests.servers import eventually
from wot_agents import Agent, RemoteError, consume
from wot_agents.bindings import RunningAgent, serve


def _href(running: RunningAgent, kind: str, name: str, op: str) -> str:
    table = {"property": running.description.properties, "action": running.description.actions}[kind] or {}
    return next(form.href for form in table[name].forms if form.href.startswith("http") and op in form.ops)


async def test_forms_carry_methods_and_sse(running: RunningAgent) -> None:
    td = running.description
    temperature = [form for form in td.properties["temperature"].forms if form.href.startswith("http")]  # type: ignore[index]
    assert {(tuple(form.ops), form.method_name, form.subprotocol) for form in temperature} == {
        (("readproperty",), "GET", None),
        (("writeproperty",), "PUT", None),
        (("observeproperty", "unobserveproperty"), "GET", "sse"),
    }
    station = [form for form in td.properties["station"].forms if form.href.startswith("http")]  # type: ignore[index]
    assert [form.ops for form in station] == [["readproperty"]]  # read-only: no write form
    assert [form.ops for form in td.forms or [] if form.href.startswith("http")] == [["readallproperties"]]


async def test_status_codes_and_problem_details(running: RunningAgent) -> None:
    base = running.base_urls["http"] + "/" + running.slug
    async with aiohttp.ClientSession() as session:
        async with session.put(base + "/properties/station", json="Paris") as response:
            assert response.status == 405
            assert response.content_type == "application/problem+json"
            assert "read-only" in (await response.json())["detail"]
        async with session.post(base + "/actions/nope", json={}) as response:
            assert response.status == 404
            assert (await response.json())["status"] == 404
        async with session.post(
            base + "/actions/add", data=b"{not json", headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 400
            assert "not JSON" in (await response.json())["detail"]
        async with session.post(base + "/actions/add", json={"a": "x"}) as response:
            body = await response.json()
            assert response.status == 400 and body["problems"][0]["pointer"] == "/a"
        async with session.post(base + "/actions/add", data=io.BytesIO(b"x" * (1024 * 1024 + 1))) as response:
            assert response.status == 413
        async with session.get(base + "/properties") as response:
            assert await response.json() == {"temperature": 20.0, "station": "Berlin"}


async def test_long_running_actions_answer_with_a_status_resource(running: RunningAgent) -> None:
    href = _href(running, "action", "long_job", "invokeaction")
    async with aiohttp.ClientSession() as session:
        async with session.post(href, json={"seconds": 0.2}) as response:
            assert response.status == 201
            location = response.headers["Location"]
        status_url = running.base_urls["http"] + location
        async with session.get(status_url) as response:
            assert (await response.json())["status"] == "pending"

        async def done() -> bool:
            async with session.get(status_url) as response:
                return (await response.json())["status"] != "pending"

        await eventually(done, within=10)  # the job takes 0.2 s
        async with session.get(status_url) as response:
            assert await response.json() == {"status": "completed", "output": "finished"}
        # any action can be run in the background on request, and cancelled
        async with session.post(
            _href(running, "action", "wait", "invokeaction"),
            json={"seconds": 5},
            headers={"Prefer": "respond-async"},
        ) as response:
            status_url = running.base_urls["http"] + response.headers["Location"]
        async with session.delete(status_url) as response:
            assert response.status == 204
        await asyncio.sleep(0.05)
        async with session.get(status_url) as response:
            assert (await response.json())["status"] == "cancelled"
    # the consumer follows the status resource: a long-running action looks like any other
    async with consume(running.description, prefer=["http"]) as thing:
        assert await thing.invoke_action("long_job", {"seconds": 0.1}) == "finished"


async def test_cors(agent: Agent) -> None:
    async with serve(agent, http=True, cors=["http://app.example"]) as running:
        href = _href(running, "action", "add", "invokeaction")
        headers = {"Origin": "http://app.example", "Access-Control-Request-Method": "POST"}
        async with aiohttp.ClientSession() as session:
            async with session.options(href, headers=headers) as response:
                assert response.status == 204
                assert response.headers["Access-Control-Allow-Origin"] == "http://app.example"
                assert "POST" in response.headers["Access-Control-Allow-Methods"]
            async with session.post(
                href, json={"a": 1}, headers={"Origin": "http://evil.example"}
            ) as response:
                assert response.status == 200
                assert "Access-Control-Allow-Origin" not in response.headers


async def test_remote_error_carries_the_problem(running: RunningAgent) -> None:
    async with consume(running.description, prefer=["http"]) as thing:
        with pytest.raises(RemoteError) as caught:
            await thing.invoke_action("broken")
    problem = caught.value.problem
    assert problem["status"] == 500 and problem["title"] == "Internal Server Error"
    assert problem["detail"].startswith("RuntimeError")
    assert caught.value.href and caught.value.href.endswith("/actions/broken")
