"""Runtime replicas on one PostgreSQL: any replica continues any conversation.

A real PostgreSQL (Debian's ``postgresql``, installed by scripts/bootstrap.sh) is started for the
module on a free loopback port; two stores stand for two runtime pods.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime import PostgresConversationStore
from runtime._store import StoredTurn
from tests.servers import free_port


def _binaries() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        pytest.fail("PostgreSQL is not installed: run scripts/bootstrap.sh (Debian package postgresql)")
    return found[-1].parent


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of its own (as the ``postgres`` user when run as root): its DSN."""
    bin_dir = _binaries()
    folder = Path(tempfile.mkdtemp(prefix="wot-pg-"))
    as_user: dict[str, Any] = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(folder, "postgres")
        as_user = {"user": "postgres", "group": "postgres"}
    data = folder / "data"
    subprocess.run(
        [bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True, **as_user,
    )  # fmt: skip
    port = free_port()
    log = (folder / "postgres.log").open("wb")
    server = subprocess.Popen(
        [bin_dir / "postgres", "-D", data, "-p", str(port), "-k", folder, "-c", "listen_addresses=127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **as_user,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(
            [bin_dir / "pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True, check=False
        ).returncode:
            assert server.poll() is None and time.monotonic() < deadline, (
                folder / "postgres.log"
            ).read_text()
            time.sleep(0.1)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        server.terminate()
        server.wait(30)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def replicas(
    postgres: str,
) -> AsyncIterator[tuple[PostgresConversationStore, PostgresConversationStore]]:
    async with (
        PostgresConversationStore(postgres, max_turns=5, max_conversations=3) as a,
        PostgresConversationStore(postgres, max_turns=5, max_conversations=3) as b,
    ):
        yield a, b


def turn(n: int, agent: str = "urn:agent:weather", at: float | None = None) -> StoredTurn:
    return StoredTurn(
        turn_id=f"t{n}", query=f"question {n}", reply=f"answer {n}", agent_id=agent, agent_name="Weather",
        method="vector", score=0.9, subset="canary", channel="web", at=at if at is not None else time.time(),
        messages=[{"role": "user", "content": f"question {n}"}],
    )  # fmt: skip


async def test_a_turn_answered_by_one_replica_is_read_by_the_other(
    replicas: tuple[PostgresConversationStore, PostgresConversationStore],
) -> None:
    a, b = replicas
    await a.append("acme", "conv-1", turn(1))
    [seen] = await b.turns("acme", "conv-1")  # at once: committed before append returned
    assert (seen.turn_id, seen.agent_id, seen.subset, seen.messages) == (
        "t1", "urn:agent:weather", "canary", [{"role": "user", "content": "question 1"}],
    )  # fmt: skip
    await b.append("acme", "conv-1", turn(2))  # the next turn lands on the other replica
    assert [t.turn_id for t in await a.turns("acme", "conv-1")] == ["t1", "t2"]
    assert [t.turn_id for t in await a.turns("acme", "conv-1", last=1)] == ["t2"]
    assert await a.turns("globex", "conv-1") == []  # tenants are apart


async def test_concurrent_appends_from_both_replicas_keep_every_turn(
    replicas: tuple[PostgresConversationStore, PostgresConversationStore],
) -> None:
    a, b = replicas
    await asyncio.gather(*(store.append("acme", "busy", turn(n)) for n, store in enumerate([a, b] * 2)))
    assert sorted(t.turn_id for t in await b.turns("acme", "busy")) == ["t0", "t1", "t2", "t3"]


async def test_bounds_turns_conversations_and_age(
    replicas: tuple[PostgresConversationStore, PostgresConversationStore],
) -> None:
    a, b = replicas
    for n in range(8):
        await a.append("bounded", "long", turn(n))
    assert [t.turn_id for t in await b.turns("bounded", "long")] == ["t3", "t4", "t5", "t6", "t7"]
    now = time.time()
    for n, conversation in enumerate(["c1", "c2", "c3"]):
        await b.append("bounded", conversation, turn(n, at=now + n + 1))
    # Four conversations for a limit of three: the least recently active ("long") went.
    listed = await a.conversations("bounded")
    assert [c.id for c in listed] == ["c3", "c2", "c1"] and listed[0].title == "question 2"
    assert await a.count("bounded") == 3
    await a.append("aged", "old", turn(1, at=now - 40 * 24 * 3600))
    assert await b.purge() == 1
    assert await a.turns("aged", "old") == []


async def test_runtimes_given_a_postgresql_dsn_share_their_conversations(postgres: str) -> None:
    from runtime import Runtime, RuntimeSettings

    settings = RuntimeSettings(store=postgres, router="explicit", mdns=False)
    async with Runtime(settings) as first, Runtime(settings) as second:
        assert isinstance(first.store, PostgresConversationStore)
        await first.store.append("acme", "shared", turn(1))
        assert [t.turn_id for t in await second.store.turns("acme", "shared")] == ["t1"]
