"""Finding a signer's public key from the DID URL in a signature's ``kid``.

``did:key`` resolves offline: the key is in the DID. ``did:web`` means fetching a DID document
from a web server the signer controls, so the fetch is bounded the way any request to a stranger
must be: one deadline, a byte limit (checked while reading, not only from ``Content-Length``),
and redirects followed only within the same scheme, host and port (a redirect elsewhere would let
whoever controls the other host choose the key). Documents are cached for ``cache_ttl`` seconds,
so verifying many descriptions of one signer costs one fetch.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import base58
from cryptography.hazmat.primitives.asymmetric import ed25519
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey

from .._errors import KeyResolutionError
from ._identity import PublicKey, did_key_public_key, did_web_url, public_key_from_multibase

__all__ = ["DidResolver", "JoseKey", "jose_public_key", "key_from_document"]

log = logging.getLogger("wot_agents.trust")

JoseKey = OKPKey | ECKey

#: Verification method types whose key material this resolver reads.
_METHOD_TYPES = frozenset(
    {
        "Ed25519VerificationKey2018",
        "Ed25519VerificationKey2020",
        "Multikey",
        "JsonWebKey2020",
        "JsonWebKey",
        "EcdsaSecp256r1VerificationKey2019",
    }
)


def jose_public_key(public_key: PublicKey) -> JoseKey:
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return OKPKey.import_key(public_key)
    return ECKey.import_key(public_key)


def _did_of(kid: str) -> str:
    return kid.partition("#")[0]


def _method_key(method: Mapping[str, Any], kid: str) -> JoseKey:
    kind = method.get("type")
    if kind not in _METHOD_TYPES:
        raise KeyResolutionError(f"the verification method {kid} has the unsupported type {kind!r}")
    if isinstance(method.get("publicKeyJwk"), Mapping):
        jwk = dict(method["publicKeyJwk"])
        if "d" in jwk:
            raise KeyResolutionError(f"the verification method {kid} publishes a private key: refused")
        if (jwk.get("kty"), jwk.get("crv")) not in (("OKP", "Ed25519"), ("EC", "P-256")):
            raise KeyResolutionError(
                f"the key of {kid} is {jwk.get('kty')}/{jwk.get('crv')}; use Ed25519 or P-256"
            )
        try:
            return OKPKey.import_key(jwk) if jwk["kty"] == "OKP" else ECKey.import_key(jwk)
        except (JoseError, ValueError, KeyError) as exc:
            raise KeyResolutionError(f"the JWK of {kid} is not a valid key: {exc}") from None
    if isinstance(method.get("publicKeyMultibase"), str):
        return jose_public_key(public_key_from_multibase(method["publicKeyMultibase"]))
    if isinstance(method.get("publicKeyBase58"), str) and kind == "Ed25519VerificationKey2018":
        try:
            raw = base58.b58decode(method["publicKeyBase58"])
            return jose_public_key(ed25519.Ed25519PublicKey.from_public_bytes(raw))
        except ValueError as exc:
            raise KeyResolutionError(f"the publicKeyBase58 of {kid} is not an Ed25519 key: {exc}") from None
    raise KeyResolutionError(f"the verification method {kid} has no key material this resolver reads")


def _refers(entry: Any, kid: str, did: str) -> bool:
    ref = entry.get("id") if isinstance(entry, Mapping) else entry
    return isinstance(ref, str) and (ref == kid or (ref.startswith("#") and did + ref == kid))


def key_from_document(document: Any, kid: str) -> JoseKey:
    """The assertion key ``kid`` (a DID URL) of a DID document, checked to be the DID's own."""
    did = _did_of(kid)
    if not isinstance(document, Mapping) or document.get("id") != did:
        got = document.get("id") if isinstance(document, Mapping) else type(document).__name__
        raise KeyResolutionError(f"the DID document of {did} is about {got!r}, not about {did}")
    methods = [m for m in document.get("verificationMethod") or () if isinstance(m, Mapping)]
    assertion = document.get("assertionMethod")
    if isinstance(assertion, list):
        methods += [m for m in assertion if isinstance(m, Mapping)]
        if not any(_refers(entry, kid, did) for entry in assertion):
            raise KeyResolutionError(f"{kid} is not an assertion method of {did}: it may not sign")
    for method in methods:
        if _refers(method, kid, did):
            controller = method.get("controller", did)
            if controller != did:
                raise KeyResolutionError(f"{kid} is controlled by {controller!r}, not by {did}")
            return _method_key(method, kid)
    raise KeyResolutionError(f"the DID document of {did} has no verification method {kid}")


@dataclass
class DidResolver:
    """Resolves the DIDs of signers to keys: ``did:key`` offline, ``did:web`` over HTTPS, bounded.

    ``max_keys`` bounds the keys kept (by ``kid``, least recently used dropped first).
    ``http_hosts`` lists hosts (``host`` or ``host:port``) whose did:web documents are fetched
    over plain HTTP: for labs and tests on loopback only. ``ssl`` is the TLS context for HTTPS
    (e.g. one trusting a lab CA made by ``wot-agents ca``); None uses the system's CAs.
    """

    timeout: float = 5.0
    max_bytes: int = 64 * 1024
    max_redirects: int = 3
    cache_ttl: float = 300.0
    max_keys: int = 10_000
    http_hosts: Collection[str] = ()
    ssl: ssl.SSLContext | None = None
    _documents: dict[str, tuple[float, Any]] = field(default_factory=dict, repr=False)
    _keys: dict[str, JoseKey] = field(default_factory=dict, repr=False)

    def cached_key(self, kid: str) -> JoseKey | None:
        """The key of ``kid`` without I/O: did:key always, did:web once resolved and still fresh.

        Keys are kept by ``kid``, least recently used dropped first past ``max_keys``: verifying
        one signer's descriptions decodes its did:key (or reads its DID document) once.
        """
        key = self._keys.pop(kid, None)
        if key is not None and (kid.startswith("did:key:") or self._fresh(_did_of(kid)) is not None):
            self._keys[kid] = key  # now the most recently used
            return key
        if kid.startswith("did:key:"):
            key = jose_public_key(did_key_public_key(kid))
        else:
            document = self._fresh(_did_of(kid))
            if document is None:
                return None
            key = key_from_document(document, kid)
        self._keys[kid] = key
        if len(self._keys) > self.max_keys:
            self._keys.pop(next(iter(self._keys)))
        return key

    async def key(self, kid: str) -> JoseKey:
        """The key of ``kid``, fetching the DID document if it is not cached."""
        key = self.cached_key(kid)
        if key is not None:
            return key
        did = _did_of(kid)
        if not did.startswith("did:web:"):
            method = ":".join(did.split(":")[:2])
            raise KeyResolutionError(
                f"cannot resolve {did}: the {method} method is not supported (did:key, did:web)"
            )
        await self.resolve(did)
        key = self.cached_key(kid)
        assert key is not None
        return key

    def _fresh(self, did: str) -> Any | None:
        cached = self._documents.get(did)
        if cached is None or cached[0] < time.monotonic():
            return None
        return cached[1]

    def forget(self, did: str | None = None) -> None:
        """Drop cached documents (one DID, or all), e.g. after a key rotation."""
        if did is None:
            self._documents.clear()
            self._keys.clear()
            return
        self._documents.pop(did, None)
        for kid in [k for k in self._keys if _did_of(k) == did]:
            del self._keys[kid]

    async def resolve(self, did: str) -> Any:
        """The DID document of a did:web (cached), or of a did:key (derived)."""
        if did.startswith("did:key:"):
            return {"id": did}
        cached = self._fresh(did)
        if cached is not None:
            return cached
        first = did_web_url(did)
        host = urlsplit(first).netloc
        url = did_web_url(did, http=host in self.http_hosts or urlsplit(first).hostname in self.http_hosts)
        document = await self._fetch(did, url)
        if not isinstance(document, Mapping) or document.get("id") != did:
            got = document.get("id") if isinstance(document, Mapping) else type(document).__name__
            raise KeyResolutionError(f"{url} answered a DID document about {got!r}, not about {did}")
        self._documents[did] = (time.monotonic() + self.cache_ttl, document)
        if len(self._documents) > 10_000:
            self._documents.pop(next(iter(self._documents)))
        return document

    async def _fetch(self, did: str, url: str) -> Any:
        origin = urlsplit(url)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for _ in range(self.max_redirects + 1):
                    async with session.get(
                        url,
                        allow_redirects=False,
                        ssl=self.ssl if self.ssl is not None else True,
                        headers={"Accept": "application/did+json, application/json"},
                    ) as response:
                        if response.status in (301, 302, 303, 307, 308):
                            target = urljoin(url, response.headers.get("Location", ""))
                            moved = urlsplit(target)
                            if (moved.scheme, moved.netloc) != (origin.scheme, origin.netloc):
                                raise KeyResolutionError(
                                    f"resolving {did}: {url} redirects to another host ({target}); refused"
                                )
                            url = target
                            continue
                        if response.status != 200:
                            raise KeyResolutionError(f"resolving {did}: {url} answered {response.status}")
                        declared = response.content_length
                        if declared is not None and declared > self.max_bytes:
                            raise KeyResolutionError(
                                f"resolving {did}: {url} sends {declared} bytes, "
                                f"over the limit of {self.max_bytes}"
                            )
                        body = await response.content.read(self.max_bytes + 1)
                        if len(body) > self.max_bytes:
                            raise KeyResolutionError(
                                f"resolving {did}: {url} sends more than the limit of {self.max_bytes} bytes"
                            )
                        break
                else:
                    raise KeyResolutionError(f"resolving {did}: more than {self.max_redirects} redirects")
        except TimeoutError:
            raise KeyResolutionError(
                f"resolving {did}: {url} did not answer within {self.timeout:g} s"
            ) from None
        except aiohttp.ClientError as exc:
            raise KeyResolutionError(f"resolving {did}: {url} could not be fetched ({exc})") from None
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise KeyResolutionError(f"resolving {did}: {url} did not answer JSON") from None
