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
import functools
import json
import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast

import orjson
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jws
from joserfc.errors import JoseError

from .._errors import KeyResolutionError, SignatureError, TrustError, UntrustedIssuer
from .._model import AgentDescription
from ._did import DidResolver, JoseKey
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
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")

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
    fast = _fast_canonical(payload)
    if fast is not None:
        return fast
    try:
        return orjson.dumps(_for_orjson(payload), option=orjson.OPT_SORT_KEYS)
    except (_Odd, RecursionError, orjson.JSONEncodeError):
        pass  # rfc8785 writes it, or says why it cannot
    try:
        return rfc8785.dumps(payload)
    except rfc8785.CanonicalizationError as exc:
        raise TrustError(f"this description cannot be put in RFC 8785 form to be signed: {exc}") from None


_SAFE_INTEGER = 2**53 - 1
#: orjson's options for the fast path: types orjson would write but RFC 8785 has no form for (and
#: subclasses of dict, list, str, int) raise instead, so they take the walk below and rfc8785.
_ORJSON = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
#: Below this magnitude ECMAScript writes a fraction in fixed notation, orjson in exponent notation.
_SMALLEST_SAME_FRACTION = 1e-5
#: Every digit as ``0``, to find runs of 16 or more digits (integers that may be beyond 2**53).
_ZEROS = bytes.maketrans(b"123456789", b"000000000")
#: What follows a number in orjson's compact text: after ``.0``, the end of an integral float
#: (``100.0``) that ECMAScript writes as an integer (``100``).
_NUMBER_ENDS = (b",", b"}", b"]")


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


def _fast_canonical(payload: dict[str, Any]) -> bytes | None:
    """RFC 8785 JSON of ``payload`` from orjson's output, mended as text; None if it takes the walk.

    orjson writes RFC 8785 but for key order with non-ASCII keys and some numbers (see
    :func:`_for_orjson`). Rather than walk the document in Python (the cost of a verification's
    canonical form), this looks at what orjson wrote, with bytes methods only (a regular
    expression over the text costs as much as the walk). With no escaped quote in it, every
    ``"`` delimits a string, so a position is outside strings when an even number of quotes
    precede it. Integral floats (``100.0``) become integers as ECMAScript writes them; when the
    text has a digit before an ``e``, a run of 16 digits or a non-ASCII character, only the text
    outside strings is looked at (:func:`_plain_structure`) before going on.
    """
    try:
        out = orjson.dumps(payload, option=_ORJSON)
    except orjson.JSONEncodeError:
        return None
    if b'\\"' in out:
        return None
    digits = out.translate(_ZEROS)
    if not out.isascii() or b"0e" in digits or b"0E" in digits or b"0000000000000000" in digits:
        if not _plain_structure(out):
            return None
    ends = [at for at in _occurrences(out, b".0") if out[at + 2 : at + 3] in _NUMBER_ENDS]
    if not ends:
        return out
    # Mend each integral float in place: a ".0" is outside strings where an even number of quotes
    # precedes it; "-0.0" becomes "0".
    pieces: list[bytes] = []
    start = counted = quotes = 0
    for at in ends:
        quotes += out.count(b'"', counted, at)
        counted = at
        if quotes % 2 == 0:
            negative_zero = out[at - 2 : at] == b"-0" and out[at - 3 : at - 2] in (b":", b",", b"[")
            pieces.append(out[start : at - 2] + b"0" if negative_zero else out[start:at])
            start = at + 2
    pieces.append(out[start:])
    return b"".join(pieces)


def _plain_structure(out: bytes) -> bool:
    """Whether orjson's text, outside strings, has only ASCII keys and numbers ECMAScript writes
    alike (integral floats aside: no exponent, no run of 16 digits that may pass 2**53)."""
    parts = out.split(b'"')
    if not out.isascii() and not all(
        parts[i].isascii() for i in range(1, len(parts) - 1, 2) if parts[i + 1][:1] == b":"
    ):
        return False
    structure = b'"'.join(parts[::2])  # every piece outside strings: structure, numbers, literals
    if b"E" in structure or b"e" in structure.replace(b"true", b"").replace(b"false", b""):
        return False
    return b"0000000000000000" not in structure.translate(_ZEROS)


def _occurrences(text: bytes, part: bytes) -> list[int]:
    found = []
    at = text.find(part)
    while at >= 0:
        found.append(at)
        at = text.find(part, at + len(part))
    return found


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


class _BadHeader(ValueError):
    """A protected header this verifier refuses (the message says why; the caller adds which)."""


def _b64decode(value: str) -> bytes:
    """Strict base64url without padding (RFC 7515 section 2): other characters are refused."""
    if len(value) % 4 == 1 or not _BASE64URL.fullmatch(value):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    header = dict(pairs)
    if len(header) != len(pairs):
        raise _BadHeader("its protected header names a parameter twice (RFC 7515 section 4)")
    return header


@functools.lru_cache(maxsize=4096)
def _protected_header(protected: str) -> Mapping[str, Any]:
    """The checked protected header of a signature, cached: one signer writes the same one each time.

    Refused: anything but base64url JSON of an object with unique names (RFC 7515 sections 4,
    7.2.1), an ``alg`` not in :data:`ALGORITHMS`, a ``kid`` that is not a DID URL, any ``crit``
    (no extension is understood here, and RFC 7515 4.1.11 forbids an empty one), and ``b64``
    other than true (an RFC 7797 unencoded payload is not what was signed here).
    """
    try:
        header = json.loads(_b64decode(protected), object_pairs_hook=_unique_members)
    except _BadHeader:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _BadHeader("its protected header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise _BadHeader("its protected header is not a JSON object")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid.startswith("did:") or "#" not in kid:
        raise _BadHeader(f"'kid' must be the DID URL of the signing key, not {kid!r}")
    if header.get("alg") not in ALGORITHMS:
        raise _BadHeader(f"algorithm {header.get('alg')!r} is not one of {ALGORITHMS}")
    if "crit" in header:
        raise _BadHeader(f"critical header parameters {header['crit']} are not understood")
    if header.get("b64", True) is not True:
        raise _BadHeader("an unencoded payload (b64: false) is not supported")
    return MappingProxyType(header)


def _header(entry: Mapping[str, Any], index: int) -> Mapping[str, Any]:
    protected = entry.get("protected")
    if not isinstance(protected, str) or not isinstance(entry.get("signature"), str):
        raise SignatureError(f"signature {index} needs a 'protected' and a 'signature' string")
    try:
        header = _protected_header(protected)
    except _BadHeader as exc:
        raise SignatureError(f"signature {index}: {exc}") from None
    unprotected = entry.get("header")
    if unprotected is not None:
        if not isinstance(unprotected, Mapping):
            raise SignatureError(f"signature {index}: its unprotected 'header' is not a JSON object")
        shared = sorted(set(unprotected) & set(header))
        if shared or "crit" in unprotected:
            raise SignatureError(
                f"signature {index}: the unprotected header repeats {shared or ['crit']}, which must be "
                "named once, in the protected header (RFC 7515 sections 4.1.11 and 7.2.1)"
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


def _verifies(algorithm: str, key: JoseKey, signature: bytes, data: bytes, index: int, issuer: str) -> bool:
    """Whether ``cryptography`` accepts the signature; a key that does not fit ``alg`` is an error.

    This is RFC 7515's JWS check done with the key library directly (what joserfc does under its
    registry, header and serialization layers); tests cross-check it against joserfc both ways.
    """
    try:
        public = key.get_op_key("verify")  # refuses a JWK whose "use" or "key_ops" forbid verifying
    except JoseError as exc:
        raise SignatureError(f"signature {index}: the key of {issuer} may not verify ({exc.error})") from None
    try:
        if algorithm == "ES256":
            if not (isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"):
                raise SignatureError(f"signature {index}: ES256 needs a P-256 key, and {issuer}'s is not")
            if len(signature) != 64:  # R and S, 32 bytes each (RFC 7518 section 3.4)
                return False
            der = encode_dss_signature(int.from_bytes(signature[:32]), int.from_bytes(signature[32:]))
            public.verify(der, data, ec.ECDSA(hashes.SHA256()))
        else:
            if not isinstance(public, ed25519.Ed25519PublicKey):
                raise SignatureError(
                    f"signature {index}: {algorithm} needs an Ed25519 key, and {issuer}'s is not"
                )
            public.verify(signature, data)
    except InvalidSignature:
        return False
    return True


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
    headers = [_header(entry, index) for index, entry in enumerate(entries)]
    encoded = base64.urlsafe_b64encode(signing_input(document)).rstrip(b"=")
    signers: list[str] = []
    for index, (entry, header) in enumerate(zip(entries, headers, strict=True)):
        kid = header["kid"]
        issuer = kid.partition("#")[0]
        key = keys.cached_key(kid)
        if key is None:
            raise KeyResolutionError(f"the key {kid} is not resolved yet", issuer=issuer)
        # The JWS signing input (RFC 7515 section 5.2): ASCII(protected) "." BASE64URL(payload).
        data = entry["protected"].encode("ascii") + b"." + encoded
        try:
            signature = _b64decode(entry["signature"])
        except ValueError:
            raise SignatureError(f"signature {index}: 'signature' is not base64url", issuer=issuer) from None
        if not _verifies(header["alg"], key, signature, data, index, issuer):
            raise SignatureError(
                f"signature {index} by {issuer} does not verify: the description was changed after "
                "signing, or not signed by that key",
                issuer=issuer,
            )
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
