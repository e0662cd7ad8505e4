"""The LMOS chat endpoint: routing among real agents over HTTP, WebSocket and MQTT, and its errors."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from runtime import RuntimeSettings
from tests.agents import Deployment, body, chat_agent, post

#: The request body of the LMOS runtime README's curl example, byte for byte, but for the query.
README_BODY = """{
           "inputContext": {
             "messages": [
               {
                 "role": "user",
                 "format": "text",
                 "content": "<user query>"
               }
             ]
           },
           "systemContext": {
             "channelId": "web"
           },
           "userContext": {
             "userId": "user456"
           }
         }"""


@pytest.fixture
async def three_bindings(deployment: Deployment, mosquitto: str) -> Deployment:
    await deployment.add(chat_agent("weather"), http=True)
    await deployment.add(chat_agent("billing"), ws=True)
    await deployment.add(chat_agent("travel"), mqtt=mosquitto)
    await deployment.start()
    return deployment


@pytest.mark.parametrize(
    ("query", "agent"),
    [
        ("will it rain in Berlin tomorrow?", "urn:test:agent:weather"),
        ("where can I find my last invoice?", "urn:test:agent:billing"),
        ("book me a flight to Madrid", "urn:test:agent:travel"),
    ],
)
async def test_the_readme_request_reaches_the_right_agent_over_its_binding(
    three_bindings: Deployment, http: aiohttp.ClientSession, query: str, agent: str
) -> None:
    payload = README_BODY.replace("<user query>", query)
    status, reply = await post(http, three_bindings.url, payload, prefix="/lmos/runtime/apis/v1")
    assert status == 200, reply
    title = three_bindings.agents[agent].description.title
    assert reply["content"] == f"{title}: {query}"
    assert reply["anonymizationEntities"] == []
    assert reply["agent"] == {"id": agent, "name": title}
    assert reply["routing"]["method"] == "vector" and reply["routing"]["subset"] == "stable"
    assert reply["routing"]["score"] > 0
    status, again = await post(http, three_bindings.url, payload)  # the current prefix answers the same
    assert (status, again["agent"]) == (200, reply["agent"])


async def test_explicit_agent_wins_over_the_router(
    three_bindings: Deployment, http: aiohttp.ClientSession
) -> None:
    status, reply = await post(http, three_bindings.url, body("will it rain?", explicit="TravelAgent"))
    assert status == 200, reply
    assert reply["content"] == "TravelAgent: will it rain?"
    assert reply["routing"]["method"] == "explicit"
    status, reply = await post(
        http, three_bindings.url, body("will it rain?", explicit="urn:test:agent:billing")
    )
    assert (status, reply["agent"]["name"]) == (200, "BillingAgent")
    status, reply = await post(http, three_bindings.url, body("hi", explicit="NoSuchAgent"))
    assert status == 404 and reply["errorCode"] == "AGENT_NOT_FOUND"
    assert "NoSuchAgent" in reply["message"]


async def test_no_agent_for_the_tenant_channel_or_turn_is_agent_not_found(
    three_bindings: Deployment, http: aiohttp.ClientSession
) -> None:
    status, reply = await post(http, three_bindings.url, body("will it rain?"), tenant="globex")
    assert (status, reply["errorCode"]) == (404, "AGENT_NOT_FOUND")
    assert "globex" in reply["message"]
    status, reply = await post(http, three_bindings.url, body("will it rain?", channel="ivr"))
    assert (status, reply["errorCode"]) == (404, "AGENT_NOT_FOUND")
    # LMOS answers 500 when no agent fits the turn; the runtime says what happened.
    status, reply = await post(http, three_bindings.url, body("what is the boiling point of tungsten"))
    assert (status, reply["errorCode"]) == (404, "AGENT_NOT_FOUND"), reply
    assert "No agent fits this turn" in reply["message"]


async def test_bad_requests_are_invalid_request(
    three_bindings: Deployment, http: aiohttp.ClientSession
) -> None:
    url = three_bindings.url
    status, reply = await post(http, url, body("hi"), turn=None)
    assert (status, reply) == (400, {"errorCode": "INVALID_REQUEST", "message": reply["message"]})
    assert "x-turn-id" in reply["message"]
    status, reply = await post(http, url, "{not json")
    assert (status, reply["errorCode"]) == (400, "INVALID_REQUEST")
    broken = body("hi")
    del broken["systemContext"]["channelId"]
    status, reply = await post(http, url, broken)
    assert (status, reply["errorCode"]) == (400, "INVALID_REQUEST")
    assert "systemContext.channelId" in reply["message"]
    empty = body("hi")
    empty["inputContext"]["messages"] = []
    status, reply = await post(http, url, empty)
    assert (status, reply["errorCode"]) == (400, "INVALID_REQUEST")
    assert "inputContext.messages" in reply["message"]


async def test_limits_on_body_size_and_messages(deployment: Deployment, http: aiohttp.ClientSession) -> None:
    await deployment.add(chat_agent("weather"), http=True)
    url = await deployment.start(max_body=2000, max_messages=3)
    status, reply = await post(http, url, body("x" * 3000))
    assert (status, reply["errorCode"]) == (413, "INVALID_REQUEST")
    many = body("rain?")
    many["inputContext"]["messages"] *= 4
    status, reply = await post(http, url, many)
    assert (status, reply["errorCode"]) == (400, "INVALID_REQUEST")
    assert "at most 3 messages" in reply["message"]


async def test_agent_failures_are_agent_client_exception(
    deployment: Deployment, http: aiohttp.ClientSession
) -> None:
    def broken(request: Any, stream: Any) -> str:
        raise RuntimeError("the billing backend is down")

    async def slow(request: Any, stream: Any) -> str:
        await asyncio.sleep(30)
        return "too late"

    await deployment.add(chat_agent("billing", answer=broken), http=True)
    await deployment.add(chat_agent("travel", answer=slow), ws=True)
    url = await deployment.start(agent_timeout=0.5)
    status, reply = await post(http, url, body("my invoice", explicit="BillingAgent"))
    assert (status, reply["errorCode"]) == (502, "AGENT_CLIENT_EXCEPTION"), reply
    assert "BillingAgent" in reply["message"]
    # The agent's problem document (RemoteError.problem) says what failed: its detail is shown.
    assert reply["message"].endswith("failed: RuntimeError: the billing backend is down"), reply
    status, reply = await post(http, url, body("a flight", explicit="TravelAgent"))
    assert (status, reply["errorCode"]) == (504, "AGENT_CLIENT_EXCEPTION"), reply
    assert "did not answer in time" in reply["message"]


async def test_the_candidates_follow_the_directory(
    deployment: Deployment, http: aiohttp.ClientSession
) -> None:
    await deployment.add(chat_agent("weather"), http=True)
    url = await deployment.start(router="explicit")
    assert deployment.runtime is not None
    async with http.get(f"{url}/apis/v1/agents", params={"tenantId": "acme", "channelId": "web"}) as answer:
        listing = await answer.json()
    assert listing["subset"] == "stable"
    assert [agent["name"] for agent in listing["agents"]] == ["WeatherAgent"]
    assert listing["agents"][0]["capabilities"][0] == {
        "id": "urn:test:capability:weather",
        "name": "weather",
        "version": "1.0.0",
        "description": "Weather forecasts for a place and a day.",
    }
    # An agent registered later is a candidate as soon as the directory's event arrives.
    await deployment.add(chat_agent("billing"), http=True)
    await deployment.wait_for(2)
    status, reply = await post(http, url, body("invoice", explicit="BillingAgent"))
    assert (status, reply["agent"]["name"]) == (200, "BillingAgent")
    await deployment.remove("urn:test:agent:billing")
    await deployment.wait_for(1)
    status, reply = await post(http, url, body("invoice", explicit="BillingAgent"))
    assert (status, reply["errorCode"]) == (404, "AGENT_NOT_FOUND")
    # The explicit router refuses a turn naming no agent, as LMOS's does.
    status, reply = await post(http, url, body("invoice"))
    assert (status, reply["errorCode"]) == (400, "INVALID_REQUEST")
    async with http.get(f"{url}/lmos/runtime/apis/v1/agents", params={"tenantId": "acme"}) as answer:
        assert answer.status == 400
        assert (await answer.json())["errorCode"] == "INVALID_REQUEST"


def test_settings_accept_lmos_variable_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_REGISTRY_URL", "http://lmos-operator:8080")
    monkeypatch.setenv("OPENAI_API_URL", "http://llm:8000/v1")
    monkeypatch.setenv("OPENAI_API_MODEL", "gpt-4o")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ROUTER_TYPE", "LLM")
    settings = RuntimeSettings()
    assert (settings.directory, settings.llm_base_url, settings.llm_model, settings.llm_api_key) == (
        "http://lmos-operator:8080",
        "http://llm:8000/v1",
        "gpt-4o",
        "sk-test",
    )
    assert settings.router == "llm"
    monkeypatch.setenv("WOT_AGENTS_RUNTIME_DIRECTORY", "http://directory:8081")
    monkeypatch.setenv("LLM_MODEL_NAME", "ignored-when-openai-name-is-set")
    assert RuntimeSettings().directory == "http://directory:8081"
    assert RuntimeSettings(directory="http://explicit").directory == "http://explicit"
    with pytest.raises(ValueError):
        RuntimeSettings(router="telepathy")


async def test_the_routing_method_per_tenant_and_channel(
    deployment: Deployment, http: aiohttp.ClientSession
) -> None:
    await deployment.add(chat_agent("weather", channels=None), http=True)
    await deployment.add(chat_agent("billing", channels=None), http=True)
    url = await deployment.start(routes={"acme/ivr": "explicit", "globex/*": "explicit"})
    status, reply = await post(http, url, body("will it rain tomorrow?"))
    assert (status, reply["routing"]["method"]) == (200, "vector")
    status, reply = await post(http, url, body("will it rain tomorrow?", channel="ivr"))
    assert (status, reply["errorCode"]) == (400, "INVALID_REQUEST")  # explicit routing there
    status, reply = await post(http, url, body("rain?", channel="ivr", explicit="WeatherAgent"))
    assert (status, reply["agent"]["name"]) == (200, "WeatherAgent")
    assert deployment.runtime is not None
    assert deployment.runtime.router_for("globex", "web") is None
    assert deployment.runtime.router_for("globex", "web") is not deployment.runtime.router_for("acme", "web")
