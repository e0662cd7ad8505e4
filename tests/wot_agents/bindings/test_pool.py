"""consume(td, clients=pool): many things, one set of sessions and connections, closed together."""

from __future__ import annotations

import asyncio

import pytest

from wot_agents import AgentDescription, ClientPool, consume

from .conftest import BINDINGS

pytestmark = pytest.mark.parametrize("binding", BINDINGS)


def _copies(td: AgentDescription, count: int) -> list[AgentDescription]:
    """The same agent under several ids: several consumed things, one server."""
    return [AgentDescription.from_dict({**td.to_dict(), "id": f"urn:test:copy-{i}"}) for i in range(count)]


async def test_things_share_the_pools_clients(td: AgentDescription, binding: str) -> None:
    async with ClientPool() as pool:
        things = [consume(copy, clients=pool, prefer=[binding]) for copy in _copies(td, 50)]
        results = await asyncio.gather(
            *(thing.invoke_action("add", {"a": i}) for i, thing in enumerate(things))
        )
        assert results == [i + 1 for i in range(50)]
        client = pool.client_for(binding)
        assert all(thing._pool.client_for(binding) is client for thing in things)
        if binding == "ws":  # one endpoint, the same credentials: one WebSocket for all fifty
            assert len(client._connections) == 1  # type: ignore[union-attr]
        # Closing one thing leaves the shared clients to the others.
        await things[0].aclose()
        assert await things[1].invoke_action("add", {"a": 1}) == 2
    with pytest.raises(RuntimeError, match="closed"):
        await things[1].invoke_action("add", {"a": 1})


async def test_closing_a_thing_closes_its_streams_not_the_pool(td: AgentDescription, binding: str) -> None:
    async with ClientPool() as pool:
        watcher, other = pool.consume(td, prefer=[binding]), pool.consume(td, prefer=[binding])
        events = await watcher.subscribe_event("alert")
        await watcher.aclose()
        assert [event async for event in events] == []  # the stream ended with its thing
        assert await other.read_property("station") == "Berlin"


async def test_consume_without_a_pool_still_owns_its_clients(td: AgentDescription, binding: str) -> None:
    async with consume(td, prefer=[binding]) as thing:
        assert await thing.invoke_action("add", {"a": 1}) == 2
        pool = thing._pool
    assert pool.closed  # closed with its only thing
