"""A third-party WoT client against our directory: node-wot drives it through the directory's own TD.

node-wot (pinned in package.json) fetches and validates the TD at /.well-known/wot, consumes it,
and invokes its actions and reads its ``things`` property over the TD's HTTP forms; its
``WoT.exploreDirectory`` lists the TDs. The W3C EventSource implementation node-wot depends on
(``eventsource``) follows the events, resuming with ``Last-Event-ID``: node-wot 0.8's own SSE
subscription only listens to untyped messages, and directory events are typed (7.3.2.2).
"""

from __future__ import annotations

import json
import uuid

import aiohttp

from tests.servers import running_directory

from .test_node_wot import _node, pytestmark  # noqa: F401  (skip unless node-wot is installed)

LAMP = "urn:example:node-wot:lamp"


async def test_node_wot_uses_the_directory_through_its_td() -> None:
    # [exploration-directory-description-type] [introduction-well-known-thing-description]
    # [tdd-things-crudl] [tdd-things-create-known-td] [tdd-things-create-anonymous-td]
    # [tdd-things-update-partial] [tdd-things-retrieve] [tdd-things-delete] [tdd-things-list-method]
    # [tdd-notification-event-id] (replay from Last-Event-ID by a standard EventSource)
    async with running_directory() as url:
        result = json.loads((await _node("directory.js", url)).strip().splitlines()[-1])
        async with aiohttp.ClientSession() as http, http.get(f"{url}/things") as response:
            left = await response.json()
    assert result["type"] == "ThingDirectory"
    assert result["retrieved"]["title"] == "Patched lamp"
    assert set(result["retrieved"]["registration"]) == {"created", "modified", "retrieved"}
    assert [td["id"] for td in result["page"]] == [LAMP]  # limit=1, id order: "urn:e" < "urn:u"
    assert result["collection"]["@type"] == "ThingCollection" and result["collection"]["total"] == 2
    [anonymous] = [i for i in result["explored"] if i != LAMP]
    assert uuid.UUID(anonymous.removeprefix("urn:uuid:")).version == 4
    assert sorted(result["explored"]) == [LAMP, anonymous]
    assert result["jsonpath"] == [LAMP]
    assert [b["id"]["value"] for b in result["sparql"]["results"]["bindings"]] == [LAMP, anonymous]
    events = result["events"]
    assert [(e["type"], e["data"]["id"]) for e in events] == [
        ("thing_created", LAMP),
        ("thing_created", anonymous),
        ("thing_updated", LAMP),
        ("thing_deleted", LAMP),
    ]
    assert events[0]["data"]["title"] == "Lamp"  # diff=true: the whole TD on creation
    assert events[2]["data"]["title"] == "Patched lamp" and "properties" not in events[2]["data"]
    assert events[3]["data"] == {"id": LAMP}
    assert len({e["id"] for e in events}) == 4
    assert "Not Found" in result["afterDelete"]
    assert [(td["id"], td["title"]) for td in left] == [(anonymous, "Anonymous lamp")]
