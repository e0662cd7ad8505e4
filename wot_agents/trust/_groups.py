"""Agent groups: proofs of identity, membership credentials, and who may call which affordance.

Three short JWTs (RFC 7519, signed with joserfc) carry everything:

- a **proof** (``typ: lmos-proof+jwt``) is signed by an agent's own key: "I am ``iss``", for one
  audience and a short time. Agents send one to the directory to manage groups or to fetch a
  credential, and one to the agent they call, bound to that agent's TD ``id``.
- a **membership credential** (``typ: lmos-membership+jwt``) is signed by a group authority (the
  directory's key): ``sub`` is a member of the groups ``grp`` until ``exp`` (60 s at most), and
  ``cnf.kid`` binds it to the member's key. A caller presents it with a proof signed by that key,
  so a stolen credential is useless without the key, and a removed member's credential lapses
  within a minute (the SDK's :class:`Membership` fetches a new one at half its life).
- an agent's :class:`AccessPolicy` maps affordance names to principals (``did:...`` identities,
  ``group:NAME`` groups); every binding sets the caller it proved, and :func:`check_access` refuses
  (:class:`~wot_agents.AccessDenied`, HTTP 403) an affordance the caller may not use.

The caller's identity may also come from a TLS client certificate (``Presented.peer``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Collection, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Protocol, Self

import aiohttp
from joserfc import jwt
from joserfc.errors import JoseError

from .._errors import AccessDenied, TrustError
from ._did import DidResolver
from ._identity import AgentIdentity
from ._signing import ALGORITHMS

__all__ = [
    "MEMBERSHIP_HEADER",
    "MEMBERSHIP_TTL",
    "PROOF_HEADER",
    "AccessPolicy",
    "Caller",
    "GroupAuthority",
    "GroupClient",
    "Membership",
    "check_access",
    "proof",
    "verify_membership",
    "verify_proof",
]

log = logging.getLogger("wot_agents.trust")

#: Where a caller puts its membership credential (``Bearer <jwt>``) and its proof: HTTP and
#: WebSocket handshake headers, MQTT 5 user properties.
MEMBERSHIP_HEADER = "Lmos-Membership"
PROOF_HEADER = "Lmos-Proof"
#: The longest life of a membership credential: a removed member is refused within it.
MEMBERSHIP_TTL = 60.0
#: Clock skew tolerated between signers and verifiers (seconds).
LEEWAY = 5.0
_PROOF_TYPE = "lmos-proof+jwt"
#: Largest answer read from a directory's group API (a group of 10,000 members is ~600 KB).
_MAX_ANSWER = 2 * 1024 * 1024
_MEMBERSHIP_TYPE = "lmos-membership+jwt"


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    parts = token.split(".")
    if len(parts) != 3:
        raise AccessDenied("not a JWT (three base64url parts)")
    try:
        header, claims = (json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in parts[:2])
    except (ValueError, UnicodeDecodeError):
        raise AccessDenied("not a JWT: its header or claims are not base64url JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AccessDenied("not a JWT: its header and claims must be JSON objects")
    return header, claims


async def _verified(token: str, typ: str, resolver: DidResolver, now: float) -> tuple[str, dict[str, Any]]:
    """The signing key's DID URL and the claims of a token of type ``typ``, checked in time."""
    header, _ = _unverified(token)
    kid, alg = header.get("kid"), header.get("alg")
    if header.get("typ") != typ:
        raise AccessDenied(f"expected a {typ} token, got typ {header.get('typ')!r}")
    if not isinstance(kid, str) or not kid.startswith("did:") or alg not in ALGORITHMS or alg == "EdDSA":
        raise AccessDenied(f"the token's kid must be a DID URL and its alg Ed25519 or ES256 (got {alg!r})")
    key = await resolver.key(kid)
    try:
        claims = dict(jwt.decode(token, key, algorithms=[alg]).claims)
    except (JoseError, ValueError) as exc:
        raise AccessDenied(f"the {typ} token's signature does not verify ({exc})") from None
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise AccessDenied(f"the {typ} token needs numeric exp and iat")
    if exp + LEEWAY < now:
        raise AccessDenied(
            f"the {typ} token of {claims.get('sub') or claims.get('iss')} expired {now - exp:.0f} s ago"
        )
    if iat - LEEWAY > now:
        raise AccessDenied(f"the {typ} token is issued in the future (iat {iat})")
    return kid, claims


def proof(
    identity: AgentIdentity,
    audience: str,
    *,
    ttl: float = 60.0,
    now: float | None = None,
    request: tuple[str, bytes] | None = None,
) -> str:
    """A proof that the holder of ``identity``'s key speaks, for ``audience``, for ``ttl`` seconds.

    ``request`` (method, body) binds it to one request: a captured proof cannot carry another body.
    """
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": identity.did,
        "aud": audience,
        "iat": issued,
        "exp": int(issued + ttl),
        "jti": uuid.uuid4().hex,
    }
    if request is not None:
        claims["htm"], claims["dig"] = request[0].upper(), _digest(request[1])
    header = {"alg": identity.algorithm, "kid": identity.key_id, "typ": _PROOF_TYPE}
    return jwt.encode(header, claims, identity.jose_key(), algorithms=[identity.algorithm], default_type=None)


def _digest(body: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=").decode("ascii")


async def verify_proof(
    token: str,
    *,
    audience: str,
    resolver: DidResolver,
    max_age: float = 300.0,
    now: float | None = None,
    request: tuple[str, bytes] | None = None,
) -> tuple[str, str]:
    """The DID (and key id) a proof speaks for; :class:`~wot_agents.AccessDenied` otherwise.

    With ``request`` (method, body) the proof must have been made for that very request.
    """
    now = time.time() if now is None else now
    kid, claims = await _verified(token, _PROOF_TYPE, resolver, now)
    if request is not None and (claims.get("htm"), claims.get("dig")) != (
        request[0].upper(),
        _digest(request[1]),
    ):
        raise AccessDenied("the proof was made for another request (method or body differ)")
    did = kid.partition("#")[0]
    if claims.get("iss") != did:
        raise AccessDenied(f"the proof claims to be {claims.get('iss')!r} but is signed by {did}")
    if claims.get("aud") != audience:
        raise AccessDenied(f"the proof is for {claims.get('aud')!r}, not for {audience!r}")
    if claims["exp"] - claims["iat"] > max_age + LEEWAY:
        raise AccessDenied(f"the proof lives {claims['exp'] - claims['iat']:.0f} s; at most {max_age:.0f} s")
    return did, kid


@dataclass(frozen=True)
class GroupAuthority:
    """Issues membership credentials; the directory is one (its key is the authority's)."""

    identity: AgentIdentity
    ttl: float = MEMBERSHIP_TTL

    @property
    def did(self) -> str:
        return self.identity.did

    def issue(
        self, member: str, member_kid: str, groups: Collection[str], *, now: float | None = None
    ) -> tuple[str, int]:
        """A credential for ``member`` (whose key is ``member_kid``) in ``groups``, and its expiry."""
        issued = int(time.time() if now is None else now)
        expires = int(issued + min(self.ttl, MEMBERSHIP_TTL))
        claims = {
            "iss": self.identity.did,
            "sub": member,
            "grp": sorted(groups),
            "iat": issued,
            "exp": expires,
            "cnf": {"kid": member_kid},
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": self.identity.algorithm, "kid": self.identity.key_id, "typ": _MEMBERSHIP_TYPE}
        token = jwt.encode(
            header, claims, self.identity.jose_key(), algorithms=[self.identity.algorithm], default_type=None
        )
        return token, expires


@dataclass(frozen=True)
class Caller:
    """Who a request proved to be: identities (DIDs), groups, and until when that holds."""

    identities: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    expires: float | None = None
    #: When the membership credential was issued (the authority's clock).
    issued: float | None = None

    def principals(self) -> frozenset[str]:
        return self.identities | {f"group:{group}" for group in self.groups}

    def __str__(self) -> str:
        return ", ".join(sorted(self.principals())) or "an anonymous caller"


ANONYMOUS = Caller()


async def verify_membership(
    credential: str,
    proof_token: str,
    *,
    authorities: Collection[str],
    audience: str,
    resolver: DidResolver,
    now: float | None = None,
) -> Caller:
    """The caller a credential + proof pair proves; :class:`~wot_agents.AccessDenied` otherwise."""
    now = time.time() if now is None else now
    kid, claims = await _verified(credential, _MEMBERSHIP_TYPE, resolver, now)
    authority = kid.partition("#")[0]
    if authority not in authorities or claims.get("iss") != authority:
        raise AccessDenied(
            f"the membership credential is issued by {authority}, not by a trusted group authority"
        )
    member = claims.get("sub")
    groups = claims.get("grp")
    confirmation = claims.get("cnf")
    if not isinstance(member, str) or not isinstance(groups, list) or not isinstance(confirmation, dict):
        raise AccessDenied("the membership credential needs sub, grp and cnf claims")
    did, proof_kid = await verify_proof(proof_token, audience=audience, resolver=resolver, now=now)
    if did != member or proof_kid != confirmation.get("kid"):
        raise AccessDenied(
            f"the proof is signed by {proof_kid}, not by the credential's key {confirmation.get('kid')}"
        )
    return Caller(
        frozenset({member}),
        frozenset(g for g in groups if isinstance(g, str)),
        float(claims["exp"]),
        float(claims["iat"]),
    )


class _Presented(Protocol):
    @property
    def peer(self) -> str | None: ...

    def header(self, name: str) -> str | None: ...


_current: contextvars.ContextVar[tuple[AccessPolicy, Caller] | None] = contextvars.ContextVar(
    "wot_agents_caller", default=None
)


@dataclass
class AccessPolicy:
    """Who may use which affordance of a served agent (``serve(access=...)``).

    ``rules`` maps an affordance name to the principals that may use it: DIDs, and
    ``group:NAME`` for members of a group; affordances without a rule are open to every caller
    the TD-level ``security`` admits (as without a policy). ``authorities`` are the DIDs of the
    group authorities (directories) whose membership credentials count; ``directory`` is where
    callers get them (it goes into the TD as the scheme's ``authorization``).
    """

    rules: Mapping[str, Collection[str]]
    authorities: Collection[str] = ()
    directory: str | None = None
    resolver: DidResolver = field(default_factory=DidResolver)
    _verified: dict[tuple[str, str, str], Caller] = field(default_factory=dict, repr=False, compare=False)
    #: Group -> (members, since when), from the directory's events (``watch()``).
    _members: dict[str, tuple[frozenset[str], float]] = field(default_factory=dict, repr=False, compare=False)

    def groups(self) -> list[str]:
        return sorted(
            {p[6:] for principals in self.rules.values() for p in principals if p.startswith("group:")}
        )

    async def identify(self, presented: _Presented, audience: str) -> Caller:
        """The caller a request proves (TLS certificate, membership credential); refuses bad proofs."""
        identities = {presented.peer} if presented.peer else set()
        given = presented.header(MEMBERSHIP_HEADER)
        if not given:
            return Caller(frozenset(identities))
        scheme, _, credential = given.partition(" ")
        credential = credential.strip() if scheme.lower() == "bearer" else given.strip()
        proof_token = presented.header(PROOF_HEADER)
        if not proof_token:
            raise AccessDenied(f"a membership credential needs a {PROOF_HEADER} signed by the member's key")
        key = (credential, proof_token, audience)
        member = self._verified.get(key)
        if member is None or (member.expires or 0) + LEEWAY < time.time():
            try:
                member = await verify_membership(
                    credential,
                    proof_token,
                    authorities=self.authorities,
                    audience=audience,
                    resolver=self.resolver,
                )
            except TrustError as exc:
                self._verified.pop(key, None)
                log.warning("refused a membership credential for %s: %s", audience, exc)
                raise AccessDenied(str(exc)) from None
            if len(self._verified) >= 10_000:
                self._verified.clear()
            # The same pair comes with every call of a member until it refreshes: verified once.
            self._verified[key] = member
        if presented.peer and presented.peer != next(iter(member.identities)):
            raise AccessDenied(f"the certificate names {presented.peer} but the credential {member}")
        return Caller(member.identities | identities, member.groups, member.expires, member.issued)

    def allows(self, caller: Caller, name: str, now: float | None = None) -> bool:
        rule = self.rules.get(name)
        if rule is None:
            return True
        if caller.expires is not None and caller.expires + LEEWAY < (time.time() if now is None else now):
            return False
        return bool(self._current(caller).principals() & set(rule))

    def _current(self, caller: Caller) -> Caller:
        """``caller`` without the groups it left after its credential was issued (``watch()``)."""
        left = set()
        for group in caller.groups:
            known = self._members.get(group)
            if known is not None and caller.issued is not None and caller.issued <= known[1]:
                if not caller.identities & known[0]:
                    left.add(group)
        return caller if not left else replace(caller, groups=caller.groups - left)

    def watch(self, *, token: str | None = None, ssl: Any = True) -> AbstractAsyncContextManager[None]:
        """Follow ``directory``'s group changes: a removed member is refused at once, not when its
        credential lapses. ``serve(access=...)`` runs it when the policy names a directory."""
        return self._watching(token, ssl)

    @asynccontextmanager
    async def _watching(self, token: str | None, ssl: Any) -> AsyncIterator[None]:
        if self.directory is None:
            yield
            return
        task = asyncio.get_running_loop().create_task(self._follow(token, ssl), name="group-events")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow(self, token: str | None, ssl: Any) -> None:
        from .._sse import parse_events

        assert self.directory is not None
        url = self.directory.rstrip("/") + "/groups/events"
        headers = {"Accept": "text/event-stream", **({"Authorization": f"Bearer {token}"} if token else {})}
        delay = 1.0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
        while True:
            try:
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.get(url, headers=headers, ssl=ssl) as response,
                ):
                    response.raise_for_status()
                    delay = 1.0
                    async for event in parse_events(response.content.iter_any()):
                        if event.event == "group":
                            self._changed(event.json())
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("following the groups of %s failed (%s); again in %.0f s", url, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    def _changed(self, event: Any) -> None:
        if not isinstance(event, dict) or not isinstance(event.get("group"), str):
            return
        members = event.get("members")
        at = event.get("at")
        listed = members if isinstance(members, list) else []
        when = float(at) if isinstance(at, int | float) else time.time()
        self._members[event["group"]] = (frozenset(m for m in listed if isinstance(m, str)), when)

    @contextmanager
    def acting(self, caller: Caller) -> Iterator[None]:
        """Run the request's handlers as ``caller`` (what :func:`check_access` sees)."""
        token = _current.set((self, caller))
        try:
            yield
        finally:
            _current.reset(token)


def check_access(kind: str, name: str) -> None:
    """Refuse (:class:`~wot_agents.AccessDenied`) the current request's caller if the policy says so.

    Called by the agent before it runs an action, writes or streams a property, or streams an
    event; outside a request (the agent's own code) nothing is checked.
    """
    current = _current.get()
    if current is None:
        return
    policy, caller = current
    if policy.allows(caller, name):
        return
    rule = ", ".join(sorted(policy.rules.get(name, ())))
    expired = caller.expires is not None and caller.expires + LEEWAY < time.time()
    why = "its membership credential has expired" if expired else f"it proved only: {caller}"
    log.warning("refused %s %r to %s: %s", kind, name, caller, why)
    raise AccessDenied(f"the {kind} {name!r} is only for {rule}; {why}")


# --- the SDK side: managing groups in a directory, and staying a member --------------------------


class GroupClient:
    """The directory's group API, with requests proved by ``identity``'s key.

    ``create``/``update`` (owner: the caller), ``dissolve``, ``get`` and ``credential`` (a
    member asks for its membership credential). ``ssl`` for an https directory with a lab CA;
    ``token`` for a directory that protects reads (``Authorization: Bearer``).
    """

    def __init__(
        self,
        directory: str,
        identity: AgentIdentity,
        *,
        timeout: float = 10.0,
        ssl: Any = True,
        token: str | None = None,
    ) -> None:
        self.directory = directory.rstrip("/")
        self.identity = identity
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ssl = ssl
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, name: str, path: str = "", body: Any = None) -> Any:
        if self._session is None:
            raise RuntimeError("use 'async with GroupClient(...)'")
        url = f"{self.directory}/groups/{name}{path}"
        data = b"" if body is None else json.dumps(body).encode()
        token = proof(self.identity, f"{self.directory}/groups/{name}", request=(method, data))
        headers = {PROOF_HEADER: token, "Content-Type": "application/json"}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        async with self._session.request(method, url, data=data, headers=headers, ssl=self._ssl) as response:
            answer = await response.content.read(_MAX_ANSWER + 1)
            if len(answer) > _MAX_ANSWER:
                raise AccessDenied(f"{method} {url}: the answer is larger than {_MAX_ANSWER} bytes")
            if response.status >= 400:
                from .._problem import ProblemDetails

                problem = ProblemDetails.from_body(answer, status=response.status)
                raise AccessDenied(f"{method} {url}: {response.status} {problem.message}")
            return json.loads(answer) if answer else None

    async def create(
        self, name: str, members: Collection[str] = (), *, policy: Mapping[str, Any] | None = None
    ) -> Any:
        """Create (or replace) group ``name`` owned by this identity."""
        body = {"owner": self.identity.did, "members": sorted(members), "policy": dict(policy or {})}
        return await self._call("PUT", name, body=body)

    async def update(
        self, name: str, members: Collection[str], *, policy: Mapping[str, Any] | None = None
    ) -> Any:
        return await self.create(name, members, policy=policy)

    async def dissolve(self, name: str) -> None:
        await self._call("DELETE", name)

    async def get(self, name: str) -> Any:
        return await self._call("GET", name)

    async def credential(self, name: str) -> tuple[str, float]:
        """A fresh membership credential for this identity in group ``name``, and its expiry."""
        answer = await self._call("POST", name, "/credentials")
        return str(answer["credential"]), float(answer["expires"])


class Membership:
    """Keeps a fresh membership credential of ``identity`` in ``group``; pass it to ``consume()``.

    ``async with Membership(directory, identity, "ops") as ops: consume(td, credentials=ops)``.
    The credential is fetched at once and again at half its life; if a refresh fails (the member
    was removed, the group dissolved) the old one is kept until it expires, then calls fail.
    """

    def __init__(
        self,
        directory: str,
        identity: AgentIdentity,
        group: str,
        *,
        ssl: Any = True,
        token: str | None = None,
    ) -> None:
        self.group = group
        self.identity = identity
        self._client = GroupClient(directory, identity, ssl=ssl, token=token)
        self._credential: tuple[str, float] | None = None
        self._proofs: dict[tuple[str, str], str] = {}
        self._task: asyncio.Task[None] | None = None
        self.error: Exception | None = None

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        try:
            self._credential = await self._client.credential(self.group)
        except BaseException:
            await self._client.aclose()
            raise
        self._task = asyncio.get_running_loop().create_task(self._refresh(), name=f"membership-{self.group}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._client.aclose()

    async def _refresh(self) -> None:
        while True:
            assert self._credential is not None
            await asyncio.sleep(max(1.0, (self._credential[1] - time.time()) / 2))
            try:
                self._credential = await self._client.credential(self.group)
                self.error = None
            except (TrustError, aiohttp.ClientError, TimeoutError) as exc:
                self.error = exc
                log.warning(
                    "could not refresh the membership of %s in %s: %s", self.identity.did, self.group, exc
                )

    @property
    def credential(self) -> str:
        if self._credential is None:
            raise RuntimeError("use 'async with Membership(...)' first")
        return self._credential[0]

    @property
    def expires(self) -> float:
        return self._credential[1] if self._credential is not None else 0.0

    def headers(self, audience: str) -> dict[str, str]:
        """What a call to the agent ``audience`` (its TD id) carries: the credential and a proof."""
        credential = self.credential
        key = (credential, audience)
        token = self._proofs.get(key)
        if token is None:
            if len(self._proofs) > 256:
                self._proofs.clear()
            ttl = max(1.0, self.expires - time.time())
            token = self._proofs[key] = proof(self.identity, audience, ttl=ttl)
        return {MEMBERSHIP_HEADER: f"Bearer {credential}", PROOF_HEADER: token}


#: The security definition a TD gets for group-only affordances (a standard bearer scheme, with
#: the extension terms saying which groups, which authorities, and where the proof goes).
MEMBERSHIP_SCHEME_NAME = "membership_sc"


def describe_access(td: Mapping[str, Any], policy: AccessPolicy) -> dict[str, Any]:
    """The TD with what callers must present: ``lmos:allow`` on each ruled affordance, and a
    ``bearer`` (JWT) scheme naming the groups on the forms of group-only affordances."""
    document = json.loads(json.dumps(td))
    groups = policy.groups()
    definitions = document.setdefault("securityDefinitions", {})
    base = document.get("security", [])
    base = [base] if isinstance(base, str) else list(base)
    if groups:
        scheme: dict[str, Any] = {
            "scheme": "bearer",
            "format": "jwt",
            "alg": "Ed25519",
            "in": "header",
            "name": MEMBERSHIP_HEADER,
            "description": f"A membership credential of a group authority (Bearer JWT, at most "
            f"{MEMBERSHIP_TTL:g} s), with a {PROOF_HEADER} JWT signed by the member's key for this TD's id.",
            "lmos:groups": groups,
            "lmos:authorities": sorted(policy.authorities),
            "lmos:proofHeader": PROOF_HEADER,
        }
        if policy.directory:
            scheme["authorization"] = policy.directory.rstrip("/") + "/groups"
        definitions[MEMBERSHIP_SCHEME_NAME] = scheme
    for kind in ("properties", "actions", "events"):
        for name, affordance in (document.get(kind) or {}).items():
            rule = policy.rules.get(name)
            if rule is None:
                continue
            affordance["lmos:allow"] = sorted(rule)
            if any(p.startswith("group:") for p in rule):
                needed = [n for n in base if definitions.get(n, {}).get("scheme") != "nosec"]
                for form in affordance.get("forms", []):
                    form["security"] = [*needed, MEMBERSHIP_SCHEME_NAME]
    return dict(document)
