"""Security schemes: credentials a client applies, checks a server enforces.

The TD says *which* schemes an endpoint requires (``securityDefinitions`` and ``security``);
the secrets always come from the caller: a client passes :class:`BasicCredentials`,
:class:`BearerToken` or :class:`ApiKey` objects to ``consume(...)``, a server passes
:class:`BasicAuth`, :class:`BearerAuth` or :class:`ApiKeyAuth` to ``serve(...)``. A TD never
carries a secret, and nothing here reads one from it.

Both sides meet on one protocol-neutral shape, :class:`Presented`: the headers and query
parameters of an HTTP or WebSocket handshake, or the MQTT 5 user properties of a message.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from .._model import SecurityScheme, ThingDescription
from ..trust._tls import MTLS_SCHEME, TlsConfig

__all__ = [
    "ApiKey",
    "ApiKeyAuth",
    "Applied",
    "BasicAuth",
    "BasicCredentials",
    "BearerAuth",
    "BearerToken",
    "Credential",
    "Credentials",
    "HeaderCredential",
    "Presented",
    "ServerSecurity",
    "apply_security",
    "security_definitions",
]

# --- client side -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    """A user name and password for the ``basic`` scheme."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class BearerToken:
    """A token for the ``bearer`` scheme."""

    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key for the ``apikey`` scheme; where it goes (header or query, which name) is the TD's say."""

    key: str = field(repr=False)


@runtime_checkable
class HeaderCredential(Protocol):
    """A credential whose headers are made at each request for one audience (the TD's id), such
    as a group membership (:class:`~wot_agents.trust.Membership`): refreshed while in use."""

    def headers(self, audience: str) -> Mapping[str, str]: ...


#: A :class:`~wot_agents.trust.TlsConfig` is the credential of the ``lmos:mtls`` scheme: its
#: certificate is presented in the TLS handshake, not in a header. A group membership
#: (:class:`HeaderCredential`) is the credential of a bearer scheme that names ``lmos:groups``.
Credential = BasicCredentials | BearerToken | ApiKey | TlsConfig | HeaderCredential
#: What a caller hands to ``consume``: one credential (used for every scheme of its kind), or
#: credentials by security-definition name.
Credentials = Credential | Mapping[str, Credential] | None

_CREDENTIAL_OF_SCHEME: dict[str, Any] = {
    "basic": BasicCredentials,
    "bearer": BearerToken,
    "apikey": ApiKey,
    MTLS_SCHEME: TlsConfig,
    "lmos:groups": HeaderCredential,  # a bearer scheme naming groups: see _apply_one
}


@dataclass(frozen=True, slots=True)
class Applied:
    """What a client adds to a request to satisfy a form's security.

    HTTP and WebSocket send ``headers`` and ``query``; MQTT sends ``headers`` as user properties
    and ``username``/``password`` in CONNECT.
    """

    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: Names of the headers and query parameters whose value is a reusable secret (a Basic
    #: password, a bearer token, an API key): a binding whose messages others may read (MQTT)
    #: sends a per-request proof of it instead.
    reusable: frozenset[str] = frozenset()


def _default_name(scheme: SecurityScheme) -> str:
    if scheme.name:
        return scheme.name
    if scheme.scheme == "apikey":
        return "api_key" if (scheme.in_ or "query") == "query" else "X-API-Key"
    return "Authorization"


class _LiveHeaders(Mapping[str, str]):
    """Fixed headers plus those of :class:`HeaderCredential` objects, current whenever read."""

    def __init__(self, fixed: Mapping[str, str], live: Sequence[HeaderCredential], audience: str) -> None:
        self._fixed, self._live, self._audience = dict(fixed), tuple(live), audience
        self._last: dict[str, str] = {}

    def _now(self) -> dict[str, str]:
        merged = dict(self._fixed)
        for credential in self._live:
            merged.update(credential.headers(self._audience))
        self._last = merged
        return merged

    def __getitem__(self, key: str) -> str:
        # Read right after iterating (``{**headers}``): the values of that same moment.
        return (self._last or self._now())[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())


def _credential_for(name: str, kind: str, credentials: Credentials) -> Credential | None:
    wanted: Any = _CREDENTIAL_OF_SCHEME.get(kind)
    if wanted is None or credentials is None:
        return None
    if isinstance(credentials, Mapping):
        found = credentials.get(name)
        if found is not None:
            return found if isinstance(found, wanted) else None
        # One credential of the right kind under another name is still the caller's intent.
        matching = [value for value in credentials.values() if isinstance(value, wanted)]
        return matching[0] if len(matching) == 1 else None
    return credentials if isinstance(credentials, wanted) else None


def _apply_one(
    name: str, td: ThingDescription, credentials: Credentials, into: dict[str, dict[str, Any]], seen: set[str]
) -> bool:
    scheme = td.security_definitions.get(name)
    if scheme is None or name in seen:
        return False
    seen = seen | {name}
    kind = scheme.scheme
    if kind == "nosec":
        return True
    if kind == "combo":
        if scheme.all_of:
            return all(_apply_one(part, td, credentials, into, seen) for part in scheme.all_of)
        for part in scheme.one_of or ():
            trial: dict[str, dict[str, Any]] = {key: dict(value) for key, value in into.items()}
            if _apply_one(part, td, credentials, trial, seen):
                into.update(trial)
                return True
        return False
    if kind == "bearer" and (scheme.model_extra or {}).get("lmos:groups") is not None:
        # A group's membership: a credential made fresh for each request (wot_agents.trust).
        live = _credential_for(name, "lmos:groups", credentials)
        if live is None:
            return False
        into["live"][name] = live
        return True
    credential = _credential_for(name, kind, credentials)
    if credential is None:
        return False
    if isinstance(credential, TlsConfig):
        return True  # presented in the handshake by the clients consume() makes from it
    where = scheme.in_ or ("query" if kind == "apikey" else "header")
    if where not in ("header", "query"):
        return False  # cookie, body, uri: not supported by these clients
    param = _default_name(scheme)
    if isinstance(credential, BasicCredentials):
        raw = f"{credential.username}:{credential.password}".encode()
        value = "Basic " + base64.b64encode(raw).decode("ascii")
        into["auth"].update(username=credential.username, password=credential.password)
    elif isinstance(credential, BearerToken):
        value = "Bearer " + credential.token
    elif isinstance(credential, ApiKey):
        value = credential.key
    else:
        return False
    into[where][param] = value
    return True


def apply_security(
    td: ThingDescription, names: str | Sequence[str] | None, credentials: Credentials
) -> Applied | None:
    """What to send for the security ``names`` of a form (or of the TD), or None if unsatisfiable.

    Several names must all be satisfied (TD 1.1 section 5.3.1.1); a ``combo`` with ``oneOf``
    takes the first alternative the caller has credentials for.
    """
    required = td.security if names is None else names
    listed = [required] if isinstance(required, str) else list(required)
    into: dict[str, dict[str, Any]] = {"header": {}, "query": {}, "auth": {}, "live": {}}
    if not all(_apply_one(name, td, credentials, into, set()) for name in listed):
        return None
    live = list(into["live"].values())
    return Applied(
        headers=_LiveHeaders(into["header"], live, td.id or td.title) if live else into["header"],
        query=into["query"],
        username=into["auth"].get("username"),
        password=into["auth"].get("password"),
        reusable=frozenset(into["header"]) | frozenset(into["query"]),
    )


# --- server side -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Presented:
    """What a request brought: headers (any case) and query parameters."""

    headers: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)
    #: The DID in the caller's TLS client certificate, verified by the handshake (None without one).
    peer: str | None = None

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        if value is not None:
            return value
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


class ServerSecurity(Protocol):
    """A scheme a server enforces: its TD definition, and the check of a request."""

    @property
    def name(self) -> str: ...

    def definition(self) -> SecurityScheme: ...

    def authenticate(self, presented: Presented) -> bool: ...

    def challenge(self) -> str | None:
        """The ``WWW-Authenticate`` value of a 401 answer, if the scheme has one."""
        ...


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _one_of(given: str | None, accepted: Collection[str] | Callable[[str], bool]) -> bool:
    if given is None:
        return False
    if callable(accepted):
        return bool(accepted(given))
    # Compare with every key so the time taken does not tell which key nearly matched.
    return any([_equal(given, candidate) for candidate in accepted])


@dataclass(frozen=True)
class BasicAuth:
    """HTTP Basic: ``users`` maps user names to passwords."""

    users: Mapping[str, str] = field(repr=False)
    name: str = "basic_sc"
    realm: str = "wot-agents"

    def definition(self) -> SecurityScheme:
        return SecurityScheme(scheme="basic", in_="header")

    def authenticate(self, presented: Presented) -> bool:
        header = presented.header("Authorization") or ""
        kind, _, encoded = header.partition(" ")
        if kind.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = self.users.get(user)
        return bool(sep) and expected is not None and _equal(password, expected)

    def challenge(self) -> str | None:
        return f'Basic realm="{self.realm}"'


@dataclass(frozen=True)
class BearerAuth:
    """Bearer tokens: a collection of accepted tokens, or a function deciding."""

    tokens: Collection[str] | Callable[[str], bool] = field(repr=False)
    name: str = "bearer_sc"
    format: str | None = None

    def definition(self) -> SecurityScheme:
        extra = {"format": self.format} if self.format else {}
        return SecurityScheme(scheme="bearer", in_="header", **extra)

    def authenticate(self, presented: Presented) -> bool:
        kind, _, token = (presented.header("Authorization") or "").partition(" ")
        return kind.lower() == "bearer" and _one_of(token.strip() or None, self.tokens)

    def challenge(self) -> str | None:
        return "Bearer"


@dataclass(frozen=True)
class ApiKeyAuth:
    """API keys in a header or a query parameter called ``param``."""

    keys: Collection[str] | Callable[[str], bool] = field(repr=False)
    name: str = "apikey_sc"
    in_: Literal["header", "query"] = "header"
    param: str = "X-API-Key"

    def definition(self) -> SecurityScheme:
        return SecurityScheme(scheme="apikey", in_=self.in_, name=self.param)

    def authenticate(self, presented: Presented) -> bool:
        given = presented.header(self.param) if self.in_ == "header" else presented.query.get(self.param)
        return _one_of(given, self.keys)

    def challenge(self) -> str | None:
        return None


def security_definitions(
    schemes: Sequence[ServerSecurity],
) -> tuple[dict[str, SecurityScheme], list[str]]:
    """``securityDefinitions`` and ``security`` of a TD served with ``schemes`` (all required)."""
    if not schemes:
        return {"nosec_sc": SecurityScheme(scheme="nosec")}, ["nosec_sc"]
    return {scheme.name: scheme.definition() for scheme in schemes}, [scheme.name for scheme in schemes]
