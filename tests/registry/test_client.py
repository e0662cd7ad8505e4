"""DirectoryClient against the real directory: the same calls an agent makes to register itself."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from wot_agents import DirectoryClient, DirectoryError

from .conftest import running_directory

pytestmark = pytest.mark.usefixtures("store_kind")


async def test_register_get_patch_list_delete(directory: str, make_td: Any) -> None:
    async with DirectoryClient(directory) as client:
        td = make_td()
        assert await client.register(td, ttl=60) == td["id"]
        anonymous = await client.register(make_td(id=None))
        assert anonymous.startswith("urn:uuid:")
        stored = await client.get(td["id"])
        assert stored["registration"]["ttl"] == 60
        await client.patch(td["id"], {"title": "New"})
        assert (await client.get(td["id"]))["title"] == "New"
        for i in range(5):
            await client.register(make_td(id=f"urn:example:{i}"))
        listed = [t["id"] async for t in client.list(page_size=2)]
        assert listed == sorted([td["id"], anonymous, *(f"urn:example:{i}" for i in range(5))])
        await client.delete(td["id"])
        with pytest.raises(DirectoryError) as caught:
            await client.get(td["id"])
        assert caught.value.status == 404 and caught.value.problem["status"] == 404


async def test_validation_error_carries_the_problem(directory: str, make_td: Any) -> None:
    async with DirectoryClient(directory) as client:
        with pytest.raises(DirectoryError) as caught:
            await client.register(make_td(security=None))
    assert caught.value.status == 400
    assert caught.value.problem["validationErrors"]


async def test_unreachable_directory_is_a_directory_error() -> None:
    async with running_directory() as url:
        pass  # started and stopped: nothing listens there any more
    async with DirectoryClient(url, timeout=2) as client:
        with pytest.raises(DirectoryError) as caught:
            await client.get("urn:x")
    assert caught.value.status is None


async def test_token_protects_writes_only(make_td: Any) -> None:
    # [tdd-things-read-only-auth]
    async with running_directory(token="s3cret") as url:
        async with DirectoryClient(url) as anonymous:
            with pytest.raises(DirectoryError) as caught:
                await anonymous.register(make_td())
            assert caught.value.status == 401
        async with DirectoryClient(url, token="wrong") as wrong:
            with pytest.raises(DirectoryError):
                await wrong.register(make_td())
        async with DirectoryClient(url, token="s3cret") as client:
            await client.register(make_td())
        async with DirectoryClient(url) as reader:
            assert len([t async for t in reader.list()]) == 1


async def test_events_resume_with_last_event_id(directory: str, make_td: Any) -> None:
    # [tdd-notification-data-create-full] [tdd-notification-data-update-diff]
    # [tdd-notification-data-update-id] [tdd-notification-data-delete-diff]
    # [tdd-notification-event-id] (missed events replayed)
    async with DirectoryClient(directory) as client:
        seen: list[Any] = []

        async def follow() -> None:
            async for event in client.events(diff=True, connected=following):
                seen.append(event)
                if len(seen) == 3:
                    return

        following = asyncio.Event()
        task = asyncio.create_task(follow())
        await asyncio.wait_for(following.wait(), 5)  # the directory notifies us from now on
        td = make_td()
        await client.register(td)
        await client.patch(td["id"], {"title": "Changed"})
        await client.delete(td["id"])
        await asyncio.wait_for(task, 5)
        assert [e.type for e in seen] == ["thing_created", "thing_updated", "thing_deleted"]
        assert seen[0].data["title"] == td["title"]  # diff=true: the full TD on creation
        assert seen[1].data == {
            "id": td["id"],
            "title": "Changed",
            "registration": seen[1].data["registration"],
        }
        assert seen[2].data == {"id": td["id"]}
        # A client that missed the last two events gets them replayed.
        replayed = []
        async for event in client.events(last_event_id=seen[0].id, reconnect=False):
            replayed.append(event)
            if len(replayed) == 2:
                break
        assert [(e.type, e.id) for e in replayed] == [(e.type, e.id) for e in seen[1:]]
        assert replayed[0].data == {"id": td["id"]}  # without diff: the id only


async def test_search_helpers(directory: str, make_td: Any) -> None:
    async with DirectoryClient(directory) as client:
        await client.register(make_td(id="urn:a", title="Alpha"))
        await client.register(make_td(id="urn:b", title="Beta", **{"lmos:supportedTenants": ["globex"]}))
        assert [t["id"] for t in await client.search(tenant="globex")] == ["urn:b"]
        assert await client.jsonpath("$[?@.title=='Alpha'].id") == ["urn:a"]
        rows = await client.sparql('SELECT ?t WHERE { ?t <https://www.w3.org/2019/wot/td#title> "Beta"@en }')
        assert [b["t"]["value"] for b in rows["results"]["bindings"]] == ["urn:b"]


async def test_client_cannot_be_reopened(directory: str) -> None:
    client = DirectoryClient(directory)
    async with client:
        pass
    await client.aclose()  # idempotent
    with pytest.raises(RuntimeError):
        await client.__aenter__()


async def test_describe_exists_count_and_language(directory: str, make_td: Any) -> None:
    async with DirectoryClient(directory) as client:
        assert (await client.describe())["@type"] == "ThingDirectory"
        assert await client.count() == 0
        thing_id = await client.register(make_td(titles={"en": "Weather", "de": "Wetter"}))
        await client.register(make_td(id="urn:other"))
        assert await client.exists(thing_id) and not await client.exists("urn:missing")
        assert await client.count() == 2
        assert (await client.get(thing_id, language="de-AT, en;q=0.1"))["title"] == "Wetter"
        assert (await client.get(thing_id))["title"] == make_td()["title"]
