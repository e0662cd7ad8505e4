"""Agent groups kept by the directory, which is their authority (it issues membership credentials).

A group has a name, an owner (a DID), members (DIDs) and a policy (``credentialTtl``, at most
60 s: a removed member is refused by every agent within that time). Every request carries a
proof (``Lmos-Proof``: a JWT signed by the caller's own key, bound to the group's URL, the
method and the body, see :mod:`wot_agents.trust`): only the owner changes or dissolves a group,
only a member gets a credential. Groups are kept in ``<db>.groups.json`` (in memory without a
db), the authority's key in ``<db>.authority.key`` (0600; a fresh one per run without a db).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from wot_agents import AgentIdentity, EventStream, ServerSentEvent, TrustError
from wot_agents.trust._groups import MEMBERSHIP_TTL, PROOF_HEADER, GroupAuthority, verify_proof

from ._config import DirectorySettings
from ._enrich import rfc3339
from ._problems import HTTPProblem
from ._trust import did_resolver

__all__ = ["Groups"]

logger = logging.getLogger("registry")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_MEMBERS = 10_000
MAX_GROUPS = 10_000


class Groups:
    """The directory's groups, and its authority key."""

    def __init__(self, settings: DirectorySettings) -> None:
        db = settings.db
        self._file = Path(f"{db}.groups.json") if db is not None else None
        key = Path(f"{db}.authority.key") if db is not None else None
        identity = AgentIdentity.load_or_create(key) if key is not None else AgentIdentity.generate()
        self.authority = GroupAuthority(identity)
        self.resolver = did_resolver(settings)
        self._groups: dict[str, dict[str, Any]] = {}
        if self._file is not None and self._file.exists():
            self._groups = json.loads(self._file.read_text(encoding="utf-8"))
        self._lock = asyncio.Lock()
        #: The queues of the clients of ``/groups/events`` (None ends a stream).
        self._listeners: set[asyncio.Queue[dict[str, Any] | None]] = set()

    def _publish(self, name: str, members: list[str], *, dissolved: bool = False) -> None:
        """Tell every ``/groups/events`` client: agents drop a removed member's credentials at once."""
        event = {"group": name, "members": members, "dissolved": dissolved, "at": time.time()}
        for queue in list(self._listeners):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a client that does not read: its stream ends, it reconnects
                self._listeners.discard(queue)
                queue.get_nowait()
                queue.put_nowait(None)

    def close(self) -> None:
        """End every ``/groups/events`` stream (the app is shutting down)."""
        for queue in self._listeners:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)
        self._listeners.clear()

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: one ``group`` event per change (members after it, or dissolved)."""
        stream = EventStream(request, keepalive=15.0)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=100)
        self._listeners.add(queue)

        async def changes() -> AsyncIterator[ServerSentEvent]:
            while (event := await queue.get()) is not None:
                yield ServerSentEvent(data=json.dumps(event), event="group")

        try:
            await stream.open()
            await stream.pipe(changes())
        finally:
            self._listeners.discard(queue)
        return stream.response

    async def _save(self) -> None:
        if self._file is None:
            return
        text = json.dumps(self._groups, ensure_ascii=False)
        file = self._file

        def write() -> None:
            temporary = file.with_suffix(".tmp")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, file)

        await asyncio.to_thread(write)

    async def _caller(self, request: web.Request, name: str, body: bytes) -> tuple[str, str]:
        """The DID (and key id) that signed the request's proof."""
        token = request.headers.get(PROOF_HEADER)
        if not token:
            raise HTTPProblem(401, f"group requests need a {PROOF_HEADER} header: a proof signed by your key")
        audience = f"{request.scheme}://{request.host}/groups/{name}"
        try:
            return await verify_proof(
                token, audience=audience, resolver=self.resolver, request=(request.method, body)
            )
        except TrustError as exc:
            logger.warning("group %s: refused a %s: %s", name, request.method, exc)
            raise HTTPProblem(401, f"the proof was refused: {exc}") from None

    @staticmethod
    def _name(request: web.Request) -> str:
        name = request.match_info["name"]
        if not _NAME.match(name) or name == "events":
            raise HTTPProblem(
                400, f"{name!r} is not a group name (letters, digits, '.', '_', '-'; 128 at most)"
            )
        return name

    def _existing(self, name: str) -> dict[str, Any]:
        group = self._groups.get(name)
        if group is None:
            raise HTTPProblem(404, f"no group {name!r}")
        return group

    # -- handlers ------------------------------------------------------------------------------
    async def list(self, request: web.Request) -> web.Response:
        return web.json_response({"authority": self.authority.did, "groups": sorted(self._groups)})

    async def get(self, request: web.Request) -> web.Response:
        return web.json_response(self._existing(self._name(request)))

    async def put(self, request: web.Request) -> web.Response:
        name = self._name(request)
        body = await request.read()
        caller, _ = await self._caller(request, name, body)
        try:
            spec = json.loads(body)
        except ValueError:
            raise HTTPProblem(400, "the body is not JSON: send {owner, members, policy}") from None
        if not isinstance(spec, dict):
            raise HTTPProblem(400, "the body must be a JSON object {owner, members, policy}")
        owner, members, policy = spec.get("owner", caller), spec.get("members", []), spec.get("policy", {})
        if not isinstance(owner, str) or not owner.startswith("did:"):
            raise HTTPProblem(400, f"owner must be a DID, not {owner!r}")
        if not isinstance(members, list) or not all(
            isinstance(m, str) and m.startswith("did:") for m in members
        ):
            raise HTTPProblem(400, "members must be an array of DIDs")
        if len(members) > MAX_MEMBERS:
            raise HTTPProblem(400, f"a group has at most {MAX_MEMBERS} members")
        if not isinstance(policy, dict):
            raise HTTPProblem(400, "policy must be an object")
        ttl = policy.get("credentialTtl", MEMBERSHIP_TTL)
        if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not 1 <= ttl <= MEMBERSHIP_TTL:
            raise HTTPProblem(400, f"policy.credentialTtl must be 1 to {MEMBERSHIP_TTL:g} seconds")
        async with self._lock:
            old = self._groups.get(name)
            if old is not None and caller != old["owner"]:
                logger.warning("group %s: %s, not its owner, tried to change it", name, caller)
                raise HTTPProblem(403, f"only the owner of {name!r} ({old['owner']}) may change it")
            if old is None and caller != owner:
                raise HTTPProblem(
                    403, f"a group is created by its owner: the proof is {caller}'s, not {owner}'s"
                )
            if old is None and len(self._groups) >= MAX_GROUPS:
                raise HTTPProblem(507, f"this directory holds {MAX_GROUPS} groups already")
            now = rfc3339(time.time())
            group = {
                "name": name,
                "owner": owner,
                "members": sorted(set(members)),
                "policy": {**policy, "credentialTtl": ttl},
                "authority": self.authority.did,
                "created": old["created"] if old is not None else now,
                "modified": now,
            }
            self._groups[name] = group
            await self._save()
            self._publish(name, sorted(set(members)))
        logger.info(
            "group %s %s by %s (%d members)", name, "changed" if old else "created", caller, len(members)
        )
        return web.json_response(group, status=200 if old is not None else 201)

    async def delete(self, request: web.Request) -> web.Response:
        name = self._name(request)
        caller, _ = await self._caller(request, name, await request.read())
        async with self._lock:
            group = self._existing(name)
            if caller != group["owner"]:
                raise HTTPProblem(403, f"only the owner of {name!r} ({group['owner']}) may dissolve it")
            del self._groups[name]
            await self._save()
            self._publish(name, [], dissolved=True)
        logger.info("group %s dissolved by %s", name, caller)
        return web.Response(status=204)

    async def credential(self, request: web.Request) -> web.Response:
        name = self._name(request)
        caller, key_id = await self._caller(request, name, await request.read())
        group = self._existing(name)
        if caller not in group["members"]:
            logger.warning("group %s: %s asked for a credential but is not a member", name, caller)
            raise HTTPProblem(403, f"{caller} is not a member of {name!r}")
        authority = GroupAuthority(self.authority.identity, ttl=float(group["policy"]["credentialTtl"]))
        credential, expires = authority.issue(caller, key_id, [name])
        return web.json_response({"credential": credential, "expires": expires, "authority": authority.did})
