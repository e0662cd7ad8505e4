"""Self-registration, the mDNS -> directory bridge and DNS-SD introduction, against the real
directory service (registry/) on loopback."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from discovery import Announcer, DirectoryBridge, Registration, find_directory
from registry import DirectorySettings, create_app
from tests.servers import eventually, http_server, port_of, serving
from wot_agents import DirectoryClient, DirectoryError, DirectoryNotFound, serve_app

from .test_loopback import LOOPBACK, thing


@asynccontextmanager
async def directory_on(port: int = 0) -> AsyncIterator[int]:
    """A fresh in-memory directory on 127.0.0.1:port; yields the port it got."""
    app = create_app(DirectorySettings(purge_interval=0.2))
    async with serve_app(app, port=port, reuse_address=True, shutdown_timeout=0.5) as url:
        yield port_of(url)


async def stored(url: str, thing_id: str) -> dict[str, Any] | None:
    async with DirectoryClient(url) as client:
        try:
            return await client.get(thing_id)
        except DirectoryError as exc:
            if exc.status == 404:
                return None
            raise


async def until_stored(url: str, thing_id: str, *, within: float, present: bool = True) -> None:
    async def check() -> bool:
        return (await stored(url, thing_id) is not None) == present

    await eventually(check, within=within)


async def test_registers_with_a_ttl_renews_it_and_deregisters_on_close() -> None:
    td = thing(f"Reg {secrets.token_hex(3)}")
    async with directory_on() as port:
        url = f"http://127.0.0.1:{port}"
        async with Registration(url, td, ttl=1.0) as registration:
            async with asyncio.timeout(5):
                await registration.wait_registered()
            document = await stored(url, td["id"])
            assert document is not None and document["registration"]["ttl"] == 1.0
            await asyncio.sleep(2.5)  # well past the ttl: only renewals keep it there
            assert await stored(url, td["id"]) is not None
        assert await stored(url, td["id"]) is None


@asynccontextmanager
async def first_answer_held(port: int) -> AsyncIterator[int]:
    """A TCP proxy to 127.0.0.1:port whose first connection's answers never come back (the
    requests do get through); the others pass both ways. Yields the proxy's port."""
    connections = 0
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, hold: bool) -> None:
        try:
            while data := await reader.read(65536):
                if not hold:
                    writer.write(data)
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def accept(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", port)
        for task in (
            asyncio.create_task(pipe(client_reader, server_writer, hold=False)),
            asyncio.create_task(pipe(server_reader, client_writer, hold=connections == 1)),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


async def test_an_agent_stopped_before_its_first_answer_came_still_deregisters() -> None:
    """The directory stored the TD, but its answer never reached the agent: closing deletes it."""
    td = thing(f"Hasty {secrets.token_hex(3)}")
    async with directory_on() as port, first_answer_held(port) as proxy:
        url = f"http://127.0.0.1:{port}"
        registration = Registration(f"http://127.0.0.1:{proxy}", td, ttl=60)
        await registration.start()
        try:
            await until_stored(url, td["id"], within=10)
        finally:
            await registration.aclose()
        assert await stored(url, td["id"]) is None


async def test_waits_for_a_directory_that_is_down_and_comes_back_after_it_lost_everything() -> None:
    td = thing(f"Patient {secrets.token_hex(3)}")
    async with directory_on() as port:
        url = f"http://127.0.0.1:{port}"
    # Nothing listens on the port now: the registration keeps retrying.
    async with Registration(url, td, ttl=2.0, retry_initial=0.1, retry_max=0.5) as registration:
        await asyncio.sleep(0.5)
        assert registration.thing_id == td["id"]
        async with directory_on(port):
            async with asyncio.timeout(5):
                await registration.wait_registered()
            await until_stored(url, td["id"], within=1)
        async with directory_on(port):  # restarted, in memory: it forgot the TD
            await until_stored(url, td["id"], within=4)


async def test_a_changed_td_is_sent_at_once_and_an_anonymous_one_keeps_its_id() -> None:
    td = thing(f"Anon {secrets.token_hex(3)}")
    del td["id"]
    async with directory_on() as port:
        url = f"http://127.0.0.1:{port}"
        async with Registration(url, td, ttl=60) as registration:
            async with asyncio.timeout(5):
                await registration.wait_registered()
            thing_id = registration.thing_id
            assert thing_id is not None and thing_id.startswith("urn:")
            await registration.update({**td, "description": "changed"})

            async def changed() -> bool:
                return ((await stored(url, thing_id)) or {}).get("description") == "changed"

            await eventually(changed, within=3)
            assert registration.thing_id == thing_id


async def test_a_shared_client_is_left_open_and_errors_do_not_escape() -> None:
    td = thing(f"Shared {secrets.token_hex(3)}")
    del td["securityDefinitions"]  # the directory refuses it: 400, retried slowly, never raised
    async with directory_on() as port, DirectoryClient(f"http://127.0.0.1:{port}") as client:
        async with Registration(client, td, ttl=60, retry_max=0.2) as registration:
            await asyncio.sleep(0.5)
            assert await stored(client.url, td["id"]) is None
        await registration.aclose()
        assert await client.jsonpath("$[*].id") == []  # the client still works


async def test_the_bridge_mirrors_lan_agents_into_the_directory() -> None:
    token = secrets.token_hex(3)
    td = thing(f"Bridged {token}")
    async with (
        directory_on() as port,
        http_server({"/.well-known/wot": serving(td)}) as agent_port,
    ):
        url = f"http://127.0.0.1:{port}"
        async with DirectoryBridge(url, ttl=5, interfaces=LOOPBACK) as bridge:
            async with Announcer(td, port=agent_port, interfaces=LOOPBACK) as announcer:
                await until_stored(url, td["id"], within=5)
                assert bridge.mirrored[str(announcer.name)] == td["id"]
                async with DirectoryClient(url) as client:
                    found = await client.search(q=f"Bridged {token}")
                assert [member["id"] for member in found] == [td["id"]]
            await until_stored(url, td["id"], within=3, present=False)  # goodbye -> deleted

            async def forgotten() -> bool:
                # The directory shows the deletion before the bridge has its DELETE answered; other
                # agents on the machine's loopback multicast (other test runs) may be mirrored too.
                return str(announcer.name) not in bridge.mirrored

            await eventually(forgotten, within=1)


async def test_a_directory_is_found_by_dns_sd() -> None:
    async with directory_on() as port:
        url = f"http://127.0.0.1:{port}"
        async with DirectoryClient(url) as client:
            directory_td = await client._json("GET", ".well-known/wot")
        directory_td["title"] = f"{directory_td['title']} {secrets.token_hex(3)}"
        async with Announcer(directory_td, port=port, interfaces=LOOPBACK) as announcer:
            assert announcer.kind == "Directory"
            # By name: another test run on this machine may announce a directory on loopback too.
            found = await find_directory(within=5, interfaces=LOOPBACK, name=directory_td["title"])
        assert found == f"{url}/"


async def test_no_directory_is_a_clear_error() -> None:
    with pytest.raises(DirectoryNotFound, match="no directory named"):
        await find_directory(within=0.5, interfaces=LOOPBACK, name=f"Nowhere {secrets.token_hex(3)}")


async def test_without_a_url_the_directory_announced_by_dns_sd_is_used() -> None:
    td = thing(f"Introduced {secrets.token_hex(3)}")
    async with directory_on() as port:
        url = f"http://127.0.0.1:{port}"
        async with DirectoryClient(url) as client:
            directory_td = await client._json("GET", ".well-known/wot")
        directory_td["title"] = f"{directory_td['title']} {secrets.token_hex(3)}"
        async with (
            Announcer(directory_td, port=port, interfaces=LOOPBACK),
            Registration(None, td, ttl=60, interfaces=LOOPBACK) as registration,
        ):
            async with asyncio.timeout(8):
                await registration.wait_registered()
            # Any directory announced on loopback will do (another test run may have one there).
            assert registration.directory is not None
            assert await stored(registration.directory, td["id"]) is not None
            found = registration.directory
        assert await stored(found, td["id"]) is None
