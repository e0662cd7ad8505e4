"""Real multicast between network namespaces: an agent on one host, ``wot-agents discover`` on
another, joined by veth pairs on a bridge (see conftest.py). Skipped where namespaces cannot be
made (not root, no iproute2, a container without CAP_NET_ADMIN)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sys
from typing import Any

from .conftest import Host, Lan, agent_host, wot_agents
from .test_serve import SDK_AGENT


def is_event(kind: str, name: str | None = None) -> Any:
    return lambda line: line.get("event") == kind and (name is None or line.get("name") == name)


async def test_an_agent_is_discovered_updated_and_removed_from_another_host(lan: Lan, spawn: Any) -> None:
    agent_ns, browser_ns = lan.hosts
    browser = await spawn(browser_ns.command(*wot_agents("discover", "--json", "--watch")))
    agent = await spawn(agent_ns.command(*agent_host("--title", f"Netns {secrets.token_hex(3)}")))
    (name,) = (await agent.expect(is_event("announced"), within=15))["names"]

    added = await browser.expect(is_event("added", name), within=10)
    assert added["valid"] is True and added["error"] is None, added["error"]
    assert added["type"] == "Thing" and added["td"] == "/.well-known/wot"
    assert added["url"].startswith(f"http://{agent_ns.address}:")
    assert agent_ns.address in added["addresses"] and agent_ns.address6 in added["addresses"]
    assert added["description"]["description"] == "test thing, revision 0"

    await agent.send("update")
    updated = await browser.expect(is_event("updated", name), within=10)
    assert updated["description"]["description"] == "test thing, revision 1"

    await agent.send("stop")
    await browser.expect(is_event("removed", name), within=5)
    await agent.expect(is_event("stopped"), within=5)


async def test_the_td_is_fetched_over_ipv6_when_ipv4_is_refused(lan: Lan, spawn: Any) -> None:
    agent_ns, browser_ns = lan.hosts
    browser = await spawn(browser_ns.command(*wot_agents("discover", "--json", "--watch")))
    title = f"Six {secrets.token_hex(3)}"
    agent = await spawn(agent_ns.command(*agent_host("--title", title, "--host", agent_ns.address6)))
    (name,) = (await agent.expect(is_event("announced"), within=15))["names"]
    added = await browser.expect(is_event("added", name), within=10)
    assert added["valid"] is True
    assert added["url"].startswith(f"http://[{agent_ns.address6}]:")


async def test_the_same_title_on_two_hosts_gets_two_names(lan: Lan, spawn: Any) -> None:
    title = f"Twin {secrets.token_hex(3)}"
    first = await spawn(lan.hosts[0].command(*agent_host("--title", title)))
    (first_name,) = (await first.expect(is_event("announced"), within=15))["names"]
    second = await spawn(lan.hosts[1].command(*agent_host("--title", title)))
    (second_name,) = (await second.expect(is_event("announced"), within=15))["names"]
    assert first_name == f"{title}._wot._tcp.local."
    assert second_name == f"{title}-2._wot._tcp.local."


async def test_discover_lists_what_it_found_when_the_time_is_up(lan: Lan, spawn: Any) -> None:
    agent_ns, browser_ns = lan.hosts
    title = f"Listed {secrets.token_hex(3)}"
    agent = await spawn(agent_ns.command(*agent_host("--title", title, "--count", "3")))
    names = (await agent.expect(is_event("announced"), within=15))["names"]
    proc = await asyncio.create_subprocess_exec(
        *browser_ns.command(*wot_agents("discover", "--json", "--timeout", "2")),
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    found = {entry["name"]: entry for entry in json.loads(stdout)}
    assert set(names) <= set(found)
    assert all(found[name]["valid"] for name in names)

    proc = await asyncio.create_subprocess_exec(
        *browser_ns.command(*wot_agents("discover", "--timeout", "2")),
        stdout=asyncio.subprocess.PIPE,
    )
    text, _ = await asyncio.wait_for(proc.communicate(), 20)
    lines = [line for line in text.decode().splitlines() if title in line]
    assert len(lines) == 3 and all("[Thing]" in line and "id=urn:" in line for line in lines)


def text(fragment: str) -> Any:
    return lambda line: fragment in line.get("text", "")


async def until_in_directory(host: Host, url: str, thing_id: str, *, present: bool, within: float) -> None:
    """Wait until the directory at ``url`` holds ``thing_id`` (or no longer does), asked from
    inside ``host`` by one process that polls: an interpreter per question takes seconds to start
    on a loaded machine, so asking with a new one each time left a bound of 10 s few questions."""
    code = (
        "import asyncio, sys\n"
        "from wot_agents import DirectoryClient, DirectoryError\n"
        "async def main():\n"
        "    want = sys.argv[3] == 'present'\n"
        "    async with DirectoryClient(sys.argv[1]) as client:\n"
        "        while True:\n"
        "            try:\n"
        "                await client.get(sys.argv[2])\n"
        "                found = True\n"
        "            except DirectoryError as exc:\n"
        "                if exc.status != 404:\n"
        "                    sys.exit(4)\n"
        "                found = False\n"
        "            if found == want:\n"
        "                return\n"
        "            await asyncio.sleep(0.2)\n"
        "asyncio.run(main())\n"
    )
    argv = (sys.executable, "-c", code, url, thing_id, "present" if present else "absent")
    proc = await asyncio.create_subprocess_exec(*host.command(*argv))
    try:
        returncode = await asyncio.wait_for(proc.wait(), within)
    except TimeoutError:
        state = "absent" if present else "present"
        raise AssertionError(f"{thing_id} still {state} after {within} s") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert returncode == 0, f"asking the directory failed ({returncode})"


async def test_a_lan_directory_is_found_by_dns_sd_and_mirrors_the_lan(lan: Lan, spawn: Any) -> None:
    """The directory announces itself; an SDK agent given no URL registers there; the bridge
    (``discover --bridge``, no URL either) mirrors a plain mDNS agent; both leave cleanly."""
    directory_ns, agents_ns = lan.hosts
    directory = await spawn(
        directory_ns.command(
            *wot_agents("directory", "--memory", "--host", "0.0.0.0", "--port", "0", "--announce")
        )
    )
    listening = await directory.expect(text("directory listening on"), within=15)
    port = int(re.search(r":(\d+)/", listening["text"]).group(1))  # type: ignore[union-attr]
    url = f"http://{directory_ns.address}:{port}"
    await directory.expect(text("directory announced as"), within=10)

    bridge = await spawn(directory_ns.command(*wot_agents("discover", "--bridge")))
    await bridge.expect(text(f"into {url}/"), within=15)

    title = f"Lan {secrets.token_hex(3)}"
    sdk_argv = (sys.executable, str(SDK_AGENT), f"{title} sdk", "--directory", "dns-sd")
    sdk = await spawn(agents_ns.command(*sdk_argv))
    sdk_id = (await sdk.expect(is_event("serving"), within=15))["id"]
    plain = await spawn(agents_ns.command(*agent_host("--title", f"{title} plain")))
    await plain.expect(is_event("announced"), within=15)
    plain_id = f"urn:wot-agents:test:{title.replace(' ', '-')}-plain:0"

    await until_in_directory(agents_ns, url, sdk_id, present=True, within=30)
    await until_in_directory(agents_ns, url, plain_id, present=True, within=30)

    await plain.send("stop")  # goodbye -> the bridge deletes it
    await until_in_directory(agents_ns, url, plain_id, present=False, within=30)
    stderr = await sdk.stop()  # Ctrl-C -> the agent deregisters itself
    assert not sdk.killed, f"the agent did not end within 30 s of Ctrl-C:\n{stderr[-4000:]}"
    await until_in_directory(agents_ns, url, sdk_id, present=False, within=30)


async def test_the_bridge_without_a_directory_on_the_lan_says_so(lan: Lan) -> None:
    proc = await asyncio.create_subprocess_exec(
        *lan.hosts[0].command(*wot_agents("discover", "--bridge", "--timeout", "1")),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1
    assert b"no directory announced" in stderr and b"--bridge URL" in stderr
