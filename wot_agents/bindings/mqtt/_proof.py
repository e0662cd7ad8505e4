"""Per-request proofs: MQTT requests carry no reusable secret in their user properties.

Every subscriber to a topic a request is published on (``weather/#``) sees its user properties,
so a bearer token, an API key or a Basic password there would be handed to anyone allowed to
listen. The MQTT client sends, in place of each such value, a proof that it holds it, bound to
this one request::

    WoT-Proof t=<unix time>,n=<random nonce>,s=<base64url HMAC-SHA256>

keyed by the value (``Bearer tok``, ``Basic ...``, the key) over the topic, ``t``, ``n`` and the
SHA-256 of the payload. The agent recomputes it with each value its schemes accept
(``BearerAuth``/``ApiKeyAuth`` with a set of tokens or keys, ``BasicAuth``), within
``WINDOW`` seconds of ``t`` and once per nonce: a captured proof is worth nothing for another
request, another topic, later, or twice. A scheme that decides by a function knows no value to
check a proof against: its callers must send the value itself (another client), which the
README says to keep to TLS brokers with ACLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence

from .._security import ApiKeyAuth, BasicAuth, BearerAuth, ServerSecurity

__all__ = ["PROOF_PREFIX", "WINDOW", "ProofChecker", "prove"]

PROOF_PREFIX = "WoT-Proof "
#: How far a proof's time may be from the agent's clock (seconds), either way.
WINDOW = 120.0
#: Nonces remembered against replays (the oldest go first beyond this).
MAX_NONCES = 100_000


def _signature(secret: str, topic: str, stamp: str, nonce: str, body: bytes) -> str:
    message = "\n".join((topic, stamp, nonce, hashlib.sha256(body).hexdigest())).encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def prove(secret: str, topic: str, body: bytes, *, now: float | None = None) -> str:
    """The proof of holding ``secret`` for one request of ``body`` on ``topic``."""
    stamp = str(int(time.time() if now is None else now))
    nonce = secrets.token_urlsafe(12)
    return f"{PROOF_PREFIX}t={stamp},n={nonce},s={_signature(secret, topic, stamp, nonce, body)}"


def _accepted(scheme: ServerSecurity) -> Iterable[str]:
    """The exact values ``scheme`` accepts, when it knows them (not when a function decides)."""
    if isinstance(scheme, BearerAuth) and isinstance(scheme.tokens, Collection):
        return ("Bearer " + token for token in scheme.tokens)
    if isinstance(scheme, ApiKeyAuth) and isinstance(scheme.keys, Collection):
        return scheme.keys
    if isinstance(scheme, BasicAuth):
        return (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            for user, password in scheme.users.items()
        )
    return ()


class ProofChecker:
    """Turns verified proofs back into the values they prove, for the schemes to check as usual."""

    def __init__(self, schemes: Sequence[ServerSecurity], *, window: float = WINDOW) -> None:
        self._schemes = tuple(schemes)  # read at each check: a set of tokens may change while serving
        self.window = window
        self._nonces: OrderedDict[str, float] = OrderedDict()

    def resolve(self, properties: Mapping[str, str], topic: str, body: bytes) -> dict[str, str]:
        """``properties`` with each valid, fresh, first-seen proof replaced by the value it proves.

        A proof that does not verify is left as it is: the scheme then refuses it (401).
        """
        resolved = dict(properties)
        now = time.time()
        for name, value in properties.items():
            if value.startswith(PROOF_PREFIX):
                proven = self._verify(value.removeprefix(PROOF_PREFIX), topic, body, now)
                if proven is not None:
                    resolved[name] = proven
        return resolved

    def _verify(self, proof: str, topic: str, body: bytes, now: float) -> str | None:
        fields = dict(part.partition("=")[::2] for part in proof.split(","))
        stamp, nonce, signature = fields.get("t", ""), fields.get("n", ""), fields.get("s", "")
        if not (stamp.isdigit() and nonce and signature) or abs(now - int(stamp)) > self.window:
            return None
        while self._nonces and next(iter(self._nonces.values())) < now - self.window:
            self._nonces.popitem(last=False)
        if nonce in self._nonces:
            return None  # a replay
        # Every candidate is tried, so the time taken does not tell which one nearly matched.
        matches = [
            candidate
            for scheme in self._schemes
            for candidate in _accepted(scheme)
            if hmac.compare_digest(_signature(candidate, topic, stamp, nonce, body), signature)
        ]
        if not matches:
            return None
        self._nonces[nonce] = now
        if len(self._nonces) > MAX_NONCES:
            self._nonces.popitem(last=False)
        return matches[0]
