"""``--router cascade`` through the runtime: the real MiniLM decides the turns it is sure of, the
real MiniLM+e5 router (multilingual) settles the rest; each reply says which one decided."""

from __future__ import annotations

import aiohttp

from tests.agents import Deployment, body, chat_agent, post


async def test_the_cascade_routes_sure_turns_fast_and_escalates_the_rest(
    deployment: Deployment, http: aiohttp.ClientSession, mosquitto: str
) -> None:
    await deployment.add(chat_agent("weather"), http=True)
    await deployment.add(chat_agent("billing"), ws=True)
    await deployment.add(chat_agent("travel"), mqtt=mosquitto)
    assert deployment.runtime is None
    url = await deployment.start(router="cascade")
    assert deployment.runtime is not None and deployment.runtime.router is not None
    assert deployment.runtime.router.method == "cascade"
    methods: dict[str, str] = {}
    for conversation, (query, agent) in enumerate(
        (
            ("will it rain tomorrow?", "WeatherAgent"),
            ("I want a refund for my last invoice", "BillingAgent"),
            ("book a flight to Rome", "TravelAgent"),
            ("Je voudrais réserver un vol pour Lisbonne", "TravelAgent"),
        )
    ):
        status, reply = await post(http, url, body(query), conversation=f"c{conversation}")
        assert status == 200, reply
        assert reply["agent"]["name"] == agent, (query, reply)
        assert reply["content"] == f"{agent}: {query}"
        methods[query] = reply["routing"]["method"]
    # MiniLM is sure of plain English; French it knows too little of: MiniLM+e5 decides.
    assert list(methods.values()) == ["cascade:fast"] * 3 + ["cascade:accurate"], methods
    async with http.get(f"{url}/metrics") as answer:
        metrics = await answer.text()
    assert 'method="cascade:fast"' in metrics and 'method="cascade:accurate"' in metrics
