"""The conversation store: turns with their agents, bounds, restarts, kill -9, sticky routing."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from runtime import SQLiteConversationStore, StoredTurn
from tests.agents import Deployment, body, chat_agent, post


def turn(n: int, agent: str = "urn:a", at: float | None = None) -> StoredTurn:
    return StoredTurn(
        turn_id=f"t{n}", query=f"q{n}", reply=f"r{n}", agent_id=agent, agent_name="A", method="vector",
        score=0.9, subset="stable", channel="web", at=at if at is not None else time.time(),
    )  # fmt: skip


async def test_the_conversation_lists_its_turns_and_their_agents(
    deployment: Deployment, http: aiohttp.ClientSession
) -> None:
    await deployment.add(chat_agent("weather"), http=True)
    await deployment.add(chat_agent("billing"), http=True)
    url = await deployment.start(router="explicit")
    await post(http, url, body("rain?", explicit="WeatherAgent"), conversation="c9", turn="t1")
    await post(http, url, body("my bill", explicit="BillingAgent"), conversation="c9", turn="t2")
    async with http.get(f"{url}/apis/v1/acme/chat/c9") as answer:
        assert answer.status == 200
        stored = await answer.json()
    assert stored["conversationId"] == "c9" and stored["tenantId"] == "acme"
    assert [(t["turnId"], t["query"], t["content"], t["agent"]["name"]) for t in stored["turns"]] == [
        ("t1", "rain?", "WeatherAgent: rain?", "WeatherAgent"),
        ("t2", "my bill", "BillingAgent: my bill", "BillingAgent"),
    ]
    assert stored["turns"][0]["routing"]["method"] == "explicit"
    async with http.get(f"{url}/lmos/runtime/apis/v1/globex/chat/c9") as answer:  # tenants are apart
        assert answer.status == 404
        assert (await answer.json())["errorCode"] == "CONVERSATION_NOT_FOUND"


async def test_a_tenants_conversations_are_listed_most_recent_first(tmp_path: Path) -> None:
    async with SQLiteConversationStore(tmp_path / "l.db", max_turns=2) as store:
        now = time.time()
        await store.append("acme", "old", turn(1, at=now - 30))
        await store.append("acme", "new", turn(2, at=now - 20))
        await store.append("acme", "new", turn(3, at=now - 10))
        await store.append("acme", "new", turn(4, at=now))  # the oldest turn of "new" goes (max_turns)
        await store.append("globex", "other", turn(5, at=now))
        listed = await store.conversations("acme")
        assert [(c.id, c.title, c.turns) for c in listed] == [("new", "q3", 2), ("old", "q1", 1)]
        assert [c.id for c in await store.conversations("acme", limit=1)] == ["new"]
        assert listed[0].to_dict()["conversationId"] == "new" and await store.conversations("none") == []


async def test_the_store_is_bounded(tmp_path: Path) -> None:
    async with SQLiteConversationStore(
        tmp_path / "s.db", max_turns=3, max_conversations=2, max_age=60
    ) as store:
        for n in range(5):
            await store.append("acme", "c1", turn(n))
        assert [t.turn_id for t in await store.turns("acme", "c1")] == ["t2", "t3", "t4"]
        assert [t.turn_id for t in await store.turns("acme", "c1", last=2)] == ["t3", "t4"]
        await store.append("acme", "c2", turn(0))
        await store.append("globex", "c1", turn(0))  # another tenant's count is its own
        await store.append("acme", "c1", turn(9))  # c1 is now the most recent
        await store.append("acme", "c3", turn(0))  # one too many for acme: the least recent (c2) goes
        assert await store.turns("acme", "c2") == []
        assert [await store.count("acme"), await store.count("globex")] == [2, 1]
    async with SQLiteConversationStore(tmp_path / "age.db", max_age=60) as store:
        await store.append("acme", "old", turn(0, at=time.time() - 3600))
        await store.append("acme", "new", turn(0))
        assert await store.purge() == 1
        assert await store.turns("acme", "old") == []
        assert await store.turns("acme", "new") != []
        assert await store.count("acme") == 1


async def test_the_recent_turns_in_memory_always_agree_with_the_database(tmp_path: Path) -> None:
    """Reads served from the in-memory recent turns equal reads of the file by a store keeping none,
    through appends, the per-conversation bound, evictions and purges."""
    db, bounds = tmp_path / "r.db", {"max_turns": 5, "max_conversations": 2, "max_age": 60}
    async with (
        SQLiteConversationStore(db, recent_turns=3, recent_conversations=2, **bounds) as cached,
        SQLiteConversationStore(db, recent_turns=0, **bounds) as plain,
    ):

        async def agree() -> None:
            for conversation in ("c1", "c2", "c3"):
                for last in (None, 0, 1, 2, 3, 4, 7):
                    seen = [t.turn_id for t in await cached.turns("acme", conversation, last=last)]
                    truth = [t.turn_id for t in await plain.turns("acme", conversation, last=last)]
                    assert seen == truth, (conversation, last)

        plan = ["c1"] * 4 + ["c2", "c1", "c3", "c2"] + ["c1"] * 7 + ["c3", "c2"]
        for n, conversation in enumerate(plan):
            await cached.append("acme", conversation, turn(n))
            await agree()
        assert len(cached._recent) <= 2  # the least recently used conversations are forgotten
        # A new conversation older than the others is evicted by its own append.
        await cached.append("acme", "c1", turn(98, at=time.time() - 7200))
        await agree()
        assert await cached.turns("acme", "c1") == []
        await cached.append("acme", "c2", turn(99, at=time.time() - 3600))  # c2 is past max_age now
        assert await cached.purge() == 1
        await agree()
        assert await cached.turns("acme", "c2") == [] and await cached.turns("acme", "c3") != []


async def test_turns_survive_a_restart(tmp_path: Path) -> None:
    async with SQLiteConversationStore(tmp_path / "s.db") as store:
        await store.append("acme", "c1", turn(1, agent="urn:weather"))
    async with SQLiteConversationStore(tmp_path / "s.db") as store:
        (kept,) = await store.turns("acme", "c1")
        assert (kept.turn_id, kept.agent_id, kept.reply) == ("t1", "urn:weather", "r1")
        assert await store.count("acme") == 1


@asynccontextmanager
async def cli_runtime(agents: Path, db: Path) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wot_agents.cli", "runtime", "--agents", str(agents), "--router", "explicit",
        "--port", "0", "--store", str(db),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        # 90 s: a fresh interpreter importing the runtime took over 30 s once at load ~8 on 2 cores.
        line = (await asyncio.wait_for(process.stdout.readline(), 90)).decode()
        match = re.search(r"listening on (http://\S+?)/apis/v1/", line)
        assert match, line
        yield match.group(1), process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_kill_9_loses_no_answered_turn(tmp_path: Path) -> None:
    async with chat_agent("weather").serve(http=True) as running:
        agents = tmp_path / "agents.json"
        agents.write_text(json.dumps([running.description.to_dict()]))
        db = tmp_path / "runtime.db"
        async with aiohttp.ClientSession() as http:
            async with cli_runtime(agents, db) as (url, process):
                for n in range(5):
                    status, _ = await post(http, url, body(f"q{n}", explicit="WeatherAgent"), turn=f"t{n}")
                    assert status == 200
                process.send_signal(signal.SIGKILL)
                await process.wait()
            async with cli_runtime(agents, db) as (url, _):
                async with http.get(f"{url}/apis/v1/acme/chat/conv-1") as answer:
                    stored: dict[str, Any] = await answer.json()
    assert [t["turnId"] for t in stored["turns"]] == [f"t{n}" for n in range(5)]
    assert stored["turns"][-1]["content"] == "WeatherAgent: q4"


async def test_a_conversation_stays_with_its_agent_unless_the_router_is_sure(
    deployment: Deployment, http: aiohttp.ClientSession
) -> None:
    for name in ("weather", "billing", "travel"):
        await deployment.add(chat_agent(name), http=True)
    url = await deployment.start()

    async def ask(query: str, n: int) -> dict[str, Any]:
        status, reply = await post(http, url, body(query), conversation="sticky", turn=f"t{n}")
        assert status == 200, reply
        return reply

    assert (await ask("will it rain in Berlin tomorrow?", 1))["agent"]["name"] == "WeatherAgent"
    follow_up = await ask("and what about the day after?", 2)
    assert follow_up["agent"]["name"] == "WeatherAgent", follow_up
    switched = await ask("I want a refund, my last invoice was wrong", 3)
    assert switched["agent"]["name"] == "BillingAgent" and switched["routing"]["method"] == "vector"


def test_sticky_keeps_the_agent_unless_another_is_clearly_ahead() -> None:
    from router import Decision
    from runtime._runtime import _sticky

    ranking = (("urn:b", 0.55), ("urn:a", 0.40))
    close = Decision("urn:b", 0.55, "best", "vector", ranking=ranking)
    kept = _sticky(close, "urn:a", 0.25)
    assert (kept.agent_id, kept.method, kept.score) == ("urn:a", "sticky", 0.40)
    assert "only 0.150 above" in kept.reason
    assert _sticky(close, "urn:a", 0.1) is close  # clearly ahead: the router's choice stands
    abstained = Decision(None, 0.1, "nothing fits", "vector", ranking=ranking)
    assert _sticky(abstained, "urn:a", 0.25).agent_id == "urn:a"
    unranked = Decision("urn:b", 0.9, "best", "vector", ranking=(("urn:b", 0.9),))
    assert _sticky(unranked, "urn:a", 0.25) is unranked


def test_the_stored_history_is_made_into_messages_only_when_read() -> None:
    from runtime import StoredTurn
    from runtime._lmos import Conversation
    from runtime._runtime import _history
    from wot_agents import ChatMessage

    stored = [
        StoredTurn("t1", "will it rain?", "yes", "urn:a", "A", "vector", 0.9, "stable", "web"),
        StoredTurn("t2", "and tomorrow?", "no", "urn:a", "A", "sticky", 0.8, "stable", "web"),
    ]
    history = _history(Conversation.model_validate(body("and the day after?")), stored)
    assert len(history) == 4 and getattr(history, "_messages", "made") is None  # nothing made yet
    assert [(m.role, m.content) for m in history] == [
        ("user", "will it rain?"),
        ("assistant", "yes"),
        ("user", "and tomorrow?"),
        ("assistant", "no"),
    ]
    assert history[-1:] == [ChatMessage(role="assistant", content="no")]
    # a client that sends the whole conversation: its own earlier messages are the history
    sent = body("and the day after?")
    sent["inputContext"]["messages"][:0] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    assert [m.content for m in _history(Conversation.model_validate(sent), stored)] == ["hi", "hello"]
