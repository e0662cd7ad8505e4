"""An agent's identity: its key pair, its DID (``did:key`` or ``did:web``) and its DID document.

The key pair is the root of everything else in :mod:`wot_agents.trust`: descriptions are signed
with it, membership credentials are bound to it, certificates name its DID. It lives in one PEM
file (PKCS #8) that :meth:`AgentIdentity.load_or_create` writes on first run, readable by its
owner only (0600); a key file others can read is refused, as ssh does.

``did:key`` needs nothing but the key (the DID *is* the public key, multibase-encoded), so it
resolves offline. ``did:web`` names a web location whose ``did.json`` lists the key; the agent
serves that document itself (``serve(identity=...)``), with a service entry pointing at its TD,
as the LMOS security page's example shows.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import base58
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from joserfc.jwk import ECKey, OKPKey

from .._errors import KeyResolutionError, TrustError

__all__ = [
    "DID_CONTEXT",
    "AgentIdentity",
    "Algorithm",
    "PrivateKey",
    "PublicKey",
    "did_key_public_key",
    "did_web_from_url",
    "did_web_url",
    "jwk_of",
    "multibase_of",
    "public_key_from_multibase",
]

Algorithm = Literal["Ed25519", "P-256"]
PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey

DID_CONTEXT = "https://www.w3.org/ns/did/v1"
#: Multicodec prefixes (unsigned varints) of the public keys a did:key may hold.
_ED25519_PUB = b"\xed\x01"
_P256_PUB = b"\x80\x24"
#: The fragment of an agent's one verification method in its did:web document (LMOS's example).
KEY_FRAGMENT = "keys-1"


def multibase_of(public_key: PublicKey) -> str:
    """The multibase (base58btc, ``z``) multicodec form of a public key, as did:key writes it."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = _ED25519_PUB + public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    elif isinstance(public_key.curve, ec.SECP256R1):
        raw = _P256_PUB + public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
        )
    else:
        raise TrustError(f"keys on the {public_key.curve.name} curve are not supported; use Ed25519 or P-256")
    return "z" + base58.b58encode(raw).decode("ascii")


def public_key_from_multibase(value: str) -> PublicKey:
    """The public key of a multibase multicodec value (``z6Mk...`` Ed25519, ``zDn...`` P-256)."""
    if not value.startswith("z"):
        raise KeyResolutionError(
            f"only base58btc multibase keys (starting with 'z') are supported: {value!r}"
        )
    try:
        raw = base58.b58decode(value[1:])
    except ValueError as exc:
        raise KeyResolutionError(f"not base58btc: {value!r} ({exc})") from None
    try:
        if raw.startswith(_ED25519_PUB) and len(raw) == 34:
            return ed25519.Ed25519PublicKey.from_public_bytes(raw[2:])
        if raw.startswith(_P256_PUB) and len(raw) == 35:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw[2:])
    except ValueError as exc:
        raise KeyResolutionError(f"not a valid public key: {value!r} ({exc})") from None
    raise KeyResolutionError(f"{value!r} is neither an Ed25519 nor a P-256 public key")


def did_key_public_key(did: str) -> PublicKey:
    """The public key a ``did:key`` DID (or DID URL) is made of."""
    if not did.startswith("did:key:"):
        raise KeyResolutionError(f"{did!r} is not a did:key")
    return public_key_from_multibase(did[len("did:key:") :].partition("#")[0])


def jwk_of(public_key: PublicKey) -> dict[str, Any]:
    """The public JWK (RFC 7517) of a key: ``OKP``/``Ed25519`` or ``EC``/``P-256``."""
    key = (
        OKPKey.import_key(public_key)
        if isinstance(public_key, ed25519.Ed25519PublicKey)
        else ECKey.import_key(public_key)
    )
    return dict(key.as_dict(private=False))


def did_web_from_url(url: str) -> str:
    """The did:web DID of a web location: ``https://h:8443/agents/billing`` ->
    ``did:web:h%3A8443:agents:billing``; a bare host names ``/.well-known/did.json``."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise TrustError(f"{url!r} has no host to make a did:web of")
    host = quote(parts.netloc.rpartition("@")[2], safe="[]")  # the port's ':' becomes %3A
    segments = [quote(unquote(s), safe="") for s in parts.path.split("/") if s]
    return ":".join(["did", "web", host, *segments])


def did_web_url(did: str, *, http: bool = False) -> str:
    """Where a did:web's document is (did:web method spec 3.2.1): https, or http when asked (labs)."""
    if not did.startswith("did:web:"):
        raise KeyResolutionError(f"{did!r} is not a did:web")
    parts = did[len("did:web:") :].partition("#")[0].split(":")
    host = unquote(parts[0])
    if not host or "/" in host or "@" in host:
        raise KeyResolutionError(f"{did!r} does not name a host")
    path = "/".join(unquote(segment) for segment in parts[1:])
    scheme = "http" if http else "https"
    return f"{scheme}://{host}/{path}/did.json" if path else f"{scheme}://{host}/.well-known/did.json"


@dataclass(frozen=True)
class AgentIdentity:
    """An agent's key pair and its DID. ``did`` is a ``did:key`` unless ``web`` names a did:web.

    Build one with :meth:`load_or_create` (a key file), :meth:`generate` (in memory, for tests
    and short-lived agents) or :meth:`from_private_key`; :meth:`with_web` gives the same key
    under a did:web.
    """

    private_key: PrivateKey = field(repr=False)
    #: A did:web DID this identity goes by, or None for its did:key.
    web: str | None = None

    @classmethod
    def generate(cls, algorithm: Algorithm = "Ed25519") -> AgentIdentity:
        """A fresh key pair, kept in memory only."""
        if algorithm == "Ed25519":
            return cls(ed25519.Ed25519PrivateKey.generate())
        if algorithm == "P-256":
            return cls(ec.generate_private_key(ec.SECP256R1()))
        raise TrustError(f"unknown key algorithm {algorithm!r}; use 'Ed25519' or 'P-256'")

    @classmethod
    def from_private_key(cls, key: PrivateKey, *, web: str | None = None) -> AgentIdentity:
        if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP256R1):
            raise TrustError(f"keys on the {key.curve.name} curve are not supported; use Ed25519 or P-256")
        if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise TrustError(f"{type(key).__name__} keys are not supported; use Ed25519 or P-256")
        return cls(key, web)

    @classmethod
    def load_or_create(
        cls, path: str | os.PathLike[str], *, algorithm: Algorithm = "Ed25519", web: str | None = None
    ) -> AgentIdentity:
        """The identity kept in ``path`` (PEM, PKCS #8), created there with mode 0600 if missing.

        Call it before the event loop starts, or in a thread: it reads (and may write) a file.
        A file that its group or others may read is refused: the key would not be the agent's alone.
        """
        file = Path(path)
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls._load(file, web)
        identity = cls.generate(algorithm)
        pem = identity.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        return cls(identity.private_key, web)

    @classmethod
    def _load(cls, file: Path, web: str | None) -> AgentIdentity:
        mode = file.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise TrustError(
                f"the key file {file} can be read by others (mode {stat.S_IMODE(mode):o}); "
                f"run 'chmod 600 {file}' or remove it to have a new key made"
            )
        try:
            key = serialization.load_pem_private_key(file.read_bytes(), password=None)
        except ValueError as exc:
            raise TrustError(f"{file} is not an unencrypted PEM private key: {exc}") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise TrustError(f"{file} holds a {type(key).__name__}; use Ed25519 or P-256")
        return cls.from_private_key(key, web=web)

    def with_web(self, did_or_url: str) -> AgentIdentity:
        """The same key under a did:web: give the DID, or the URL it stands for."""
        did = did_or_url if did_or_url.startswith("did:web:") else did_web_from_url(did_or_url)
        did_web_url(did)  # checks it names a host
        return AgentIdentity(self.private_key, did)

    # --- what others see ---------------------------------------------------------------------

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    @property
    def algorithm(self) -> str:
        """The JWS ``alg`` of this key: ``Ed25519`` (RFC 9864) or ``ES256``."""
        return "Ed25519" if isinstance(self.private_key, ed25519.Ed25519PrivateKey) else "ES256"

    @property
    def did_key(self) -> str:
        return "did:key:" + multibase_of(self.public_key)

    @property
    def did(self) -> str:
        """The DID this agent goes by: its did:web if it has one, else its did:key."""
        return self.web or self.did_key

    @property
    def key_id(self) -> str:
        """The DID URL of the signing key (the JWS ``kid``)."""
        if self.web is not None:
            return f"{self.web}#{KEY_FRAGMENT}"
        return f"{self.did_key}#{multibase_of(self.public_key)}"

    @property
    def public_jwk(self) -> dict[str, Any]:
        return jwk_of(self.public_key)

    def jose_key(self) -> OKPKey | ECKey:
        """The private key as joserfc wants it for signing."""
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return OKPKey.import_key(self.private_key)
        return ECKey.import_key(self.private_key)

    def did_document(self, *, td_url: str | None = None) -> dict[str, Any]:
        """This identity's DID document; with ``td_url``, a ``WotThing`` service pointing at the TD.

        Ed25519 keys are written as in the LMOS security page's example
        (``Ed25519VerificationKey2018``, ``publicKeyBase58``), P-256 keys as ``JsonWebKey2020``.
        """
        did = self.did
        key_id = self.key_id
        method: dict[str, Any] = {"id": key_id, "controller": did}
        contexts: list[str] = [DID_CONTEXT]
        if isinstance(self.public_key, ed25519.Ed25519PublicKey):
            raw = self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            method.update(type="Ed25519VerificationKey2018", publicKeyBase58=base58.b58encode(raw).decode())
            contexts.append("https://w3id.org/security/suites/ed25519-2018/v1")
        else:
            method.update(type="JsonWebKey2020", publicKeyJwk=self.public_jwk)
            contexts.append("https://w3id.org/security/suites/jws-2020/v1")
        document: dict[str, Any] = {
            "@context": contexts,
            "id": did,
            "verificationMethod": [method],
            "authentication": [key_id],
            "assertionMethod": [key_id],
        }
        if td_url is not None:
            document["service"] = [{"id": f"{did}#td", "type": "WotThing", "serviceEndpoint": td_url}]
        return document
