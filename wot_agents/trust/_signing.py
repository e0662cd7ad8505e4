"""Signed descriptions: a JWS with detached payload over the RFC 8785 form of the TD.

The shape follows A2A's signed agent cards: the TD carries a ``signatures`` array, each entry a
flattened JWS JSON serialization (RFC 7515 7.2.2) without its payload: ``protected`` (the
base64url protected header: ``alg``, ``kid``, ``typ``), ``signature`` and an optional unprotected
``header``. The payload (RFC 7515 appendix F) is the RFC 8785 canonical JSON of the TD
without ``signatures`` and without what a directory adds on registration: the ``registration``
object and the WoT Discovery context it appends to ``@context``. So a TD verifies the same when
served by its agent, after a directory enriched it, and in a directory listing.

``kid`` is a DID URL; the key is the DID's (see :mod:`._did`), and the DID is the issuer a
:class:`TrustPolicy` accepts or not. A signature that does not verify is never skipped: one bad
signature makes the whole description suspect.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import warnings
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import rfc8785
from joserfc import jws
from joserfc.errors import JoseError

from .._errors import KeyResolutionError, SignatureError, TrustError, UntrustedIssuer
from .._model import AgentDescription
from ._did import DidResolver
from ._identity import AgentIdentity

__all__ = ["ALGORITHMS", "SIGNATURES", "TrustPolicy", "issuers", "sign", "signing_input", "verify"]

log = logging.getLogger("wot_agents.trust")

#: The TD member holding the signatures (defined as ``lmos:signatures`` in the LMOS context).
SIGNATURES = "signatures"
#: Algorithms accepted on verification. ``EdDSA`` is what RFC 8037 called Ed25519 before RFC 9864
#: made algorithm names fully specified; signers here write ``Ed25519`` or ``ES256``.
ALGORITHMS = ("Ed25519", "ES256", "EdDSA")
_DISCOVERY_CONTEXTS = frozenset(
    {"https://www.w3.org/2022/wot/discovery", "https://www.w3.org/2022/wot/discovery/"}
)
#: Members a directory owns: never part of what the agent signed.
_UNSIGNED = frozenset({SIGNATURES, "registration"})

_default_resolver = DidResolver()


def _document(td: AgentDescription | Mapping[str, Any]) -> Mapping[str, Any]:
    return td.to_dict() if isinstance(td, AgentDescription) else td


def signing_input(td: AgentDescription | Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: RFC 8785 JSON of the TD as its agent wrote it."""
    document = _document(td)
    payload = {key: value for key, value in document.items() if key not in _UNSIGNED}
    context = payload.get("@context")
    if isinstance(context, list) and any(isinstance(c, str) and c in _DISCOVERY_CONTEXTS for c in context):
        kept = [c for c in context if not (isinstance(c, str) and c in _DISCOVERY_CONTEXTS)]
        # A directory turns a lone context string into [string, discovery]: undo that too.
        payload["@context"] = kept[0] if len(kept) == 1 else kept
    try:
        return orjson.dumps(_for_orjson(payload), option=orjson.OPT_SORT_KEYS)
    except (_Odd, RecursionError, orjson.JSONEncodeError):
        pass  # rfc8785 writes it, or says why it cannot
    try:
        return rfc8785.dumps(payload)
    except rfc8785.CanonicalizationError as exc:
        raise TrustError(f"this description cannot be put in RFC 8785 form to be signed: {exc}") from None


_SAFE_INTEGER = 2**53 - 1
#: Below this magnitude ECMAScript writes a fraction in fixed notation, orjson in exponent notation.
_SMALLEST_SAME_FRACTION = 1e-5


class _Odd(Exception):
    """A value orjson would not write as RFC 8785 does."""


def _number(value: Any, kind: type) -> Any:
    if kind is int:
        if -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
            return value
    elif kind is float:
        if value.is_integer():
            if -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
                return int(value)  # ECMAScript writes 100.0 as 100 (and -0.0 as 0)
        elif _SMALLEST_SAME_FRACTION <= abs(value):
            return value
    raise _Odd


def _for_orjson(value: Any) -> Any:
    """``value`` as orjson must see it to write its RFC 8785 form, or :class:`_Odd`.

    orjson with sorted keys writes RFC 8785 when every key is ASCII (RFC 8785 sorts UTF-16 code
    units, orjson code points: they agree on ASCII), every integer is exact in a double, every
    fraction is >= 1e-5 (below, orjson uses an exponent, ECMAScript does not) and integral floats
    are integers; strings are escaped alike (tests/trust/test_signing.py compares both writers on
    random documents). Containers are copied only where a float becomes an integer.
    """
    kind = type(value)
    if kind is dict:
        if not "".join(value).isascii():
            raise _Odd
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            item_kind = type(item)
            if item_kind is str or item_kind is bool or item is None:
                continue
            new = _for_orjson(item) if item_kind is dict or item_kind is list else _number(item, item_kind)
            if new is not item or type(new) is not item_kind:
                if changed is None:
                    changed = dict(value)
                changed[key] = new
        return value if changed is None else changed
    if kind is list:
        copied: list[Any] | None = None
        for index, item in enumerate(value):
            item_kind = type(item)
            if item_kind is str or item_kind is bool or item is None:
                continue
            new = _for_orjson(item) if item_kind is dict or item_kind is list else _number(item, item_kind)
            if new is not item or type(new) is not item_kind:
                if copied is None:
                    copied = list(value)
                copied[index] = new
        return value if copied is None else copied
    if kind is str or kind is bool or value is None:
        return value
    return _number(value, kind)


@functools.cache
def _registry(algorithm: str) -> jws.JWSRegistry:
    """One JWS registry per algorithm, made once (joserfc would make one per call)."""
    return jws.JWSRegistry(algorithms=[algorithm])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _header(entry: Mapping[str, Any], index: int) -> dict[str, Any]:
    protected = entry.get("protected")
    if not isinstance(protected, str) or not isinstance(entry.get("signature"), str):
        raise SignatureError(f"signature {index} needs a 'protected' and a 'signature' string")
    try:
        header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise SignatureError(f"signature {index}: its protected header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise SignatureError(f"signature {index}: its protected header is not a JSON object")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid.startswith("did:") or "#" not in kid:
        raise SignatureError(f"signature {index}: 'kid' must be the DID URL of the signing key, not {kid!r}")
    if header.get("alg") not in ALGORITHMS:
        raise SignatureError(f"signature {index}: algorithm {header.get('alg')!r} is not one of {ALGORITHMS}")
    if header.get("crit"):
        raise SignatureError(
            f"signature {index}: critical header parameters {header['crit']} are not understood"
        )
    return header


def _entries(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    entries = document.get(SIGNATURES)
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise SignatureError(f"'{SIGNATURES}' must be an array of JWS objects (protected, signature, header)")
    return entries


def issuers(td: AgentDescription | Mapping[str, Any]) -> list[str]:
    """The DIDs named by a description's signatures (not verified: see :func:`verify`)."""
    document = _document(td)
    return [_header(entry, i)["kid"].partition("#")[0] for i, entry in enumerate(_entries(document))]


def sign(
    td: AgentDescription | Mapping[str, Any],
    identity: AgentIdentity,
    *,
    header: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The description with ``identity``'s signature added (replacing an older one of the same key).

    Other signers' signatures are kept only if they still verify over the same content; sign
    last, after every other change.
    """
    document = dict(_document(td))
    payload = signing_input(document)
    protected = {"alg": identity.algorithm, "kid": identity.key_id, "typ": "JOSE"}
    member: dict[str, Any] = {"protected": protected}
    if header:
        member["header"] = dict(header)
    value = jws.serialize_json(
        cast(jws.HeaderDict, member), payload, identity.jose_key(), algorithms=[identity.algorithm]
    )
    entry: dict[str, Any] = {"protected": value["protected"], "signature": value["signature"]}
    if header:
        entry["header"] = dict(header)
    others = [e for e in _entries(document) if _header(e, 0).get("kid") != identity.key_id]
    document[SIGNATURES] = [*others, entry]
    return document


@contextlib.contextmanager
def _quiet_eddsa() -> Iterator[None]:
    # joserfc warns that the name "EdDSA" is deprecated (RFC 9864); others still write it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def verify(
    td: AgentDescription | Mapping[str, Any],
    *,
    trusted: Collection[str] | None = None,
    resolver: DidResolver | None = None,
) -> list[str]:
    """Check every signature of a description; return the DIDs that signed it.

    Raises :class:`SignatureError` if it is unsigned or any signature fails (tampered content,
    another key), :class:`UntrustedIssuer` if ``trusted`` is given and no signer is in it, and
    :class:`KeyResolutionError` for a did:web key not resolved yet (use :meth:`TrustPolicy.check`,
    which fetches it). did:key signers need no I/O.
    """
    keys = resolver or _default_resolver
    document = _document(td)
    entries = _entries(document)
    if not entries:
        raise SignatureError("the description is not signed (no 'signatures')")
    canonical = signing_input(document)
    encoded: str | None = None  # only for the rare entry with an unprotected header
    signers: list[str] = []
    for index, entry in enumerate(entries):
        header = _header(entry, index)
        kid = header["kid"]
        issuer = kid.partition("#")[0]
        key = keys.cached_key(kid)
        if key is None:
            raise KeyResolutionError(f"the key {kid} is not resolved yet", issuer=issuer)
        registry = _registry(header["alg"])
        try:
            with _quiet_eddsa() if header["alg"] == "EdDSA" else contextlib.nullcontext():
                if isinstance(entry.get("header"), Mapping):
                    encoded = encoded or _b64(canonical)
                    value = {
                        "protected": entry["protected"],
                        "signature": entry["signature"],
                        "payload": encoded,
                        "header": dict(entry["header"]),
                    }
                    jws.deserialize_json(cast(jws.FlattenedJSONSerialization, value), key, registry=registry)
                else:
                    # The detached compact form (RFC 7515 appendix F) of the same JWS: the library
                    # encodes the payload itself, and this path costs ~30% less than the JSON one.
                    detached = f"{entry['protected']}..{entry['signature']}"
                    jws.deserialize_compact(detached, key, registry=registry, payload=canonical)
        except JoseError as exc:
            raise SignatureError(
                f"signature {index} by {issuer} does not verify: the description was changed after "
                f"signing, or not signed by that key ({exc.error})",
                issuer=issuer,
            ) from None
        signers.append(issuer)
    if trusted is not None and not any(signer in trusted for signer in signers):
        raise UntrustedIssuer(
            f"signed by {', '.join(signers)}, none of them a trusted issuer", issuer=signers[0]
        )
    return signers


@dataclass
class TrustPolicy:
    """What a consumer, the runtime or a directory demands of a description before trusting it.

    ``require_signature``: refuse unsigned descriptions (a signed one is always verified).
    ``trusted``: DIDs whose signature is accepted; None accepts any signer whose key resolves.
    """

    require_signature: bool = True
    trusted: Collection[str] | None = None
    resolver: DidResolver = field(default_factory=DidResolver)

    async def check(self, td: AgentDescription | Mapping[str, Any], *, source: str = "") -> list[str]:
        """The verified signers of ``td``, or a :class:`~wot_agents.TrustError` (also logged)."""
        document = _document(td)
        where = f"{source}: " if source else ""
        try:
            entries = _entries(document)
            if not entries:
                if self.require_signature:
                    raise UntrustedIssuer("the description is not signed, and a signature is required")
                return []
            for index, entry in enumerate(entries):
                kid = _header(entry, index)["kid"]
                try:
                    await self.resolver.key(kid)
                except KeyResolutionError as exc:
                    exc.issuer = exc.issuer or kid.partition("#")[0]
                    raise
            trusted = None if self.trusted is None else frozenset(self.trusted)
            return verify(document, trusted=trusted, resolver=self.resolver)
        except TrustError as exc:
            log.warning("%srefused %s: %s", where, document.get("id") or document.get("title"), exc)
            raise
