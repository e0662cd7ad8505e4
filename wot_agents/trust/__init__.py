"""Trust: agent identities (DIDs), signed descriptions, and the checks that rely on them.

An agent's :class:`AgentIdentity` is a key pair and a DID (``did:key``, or a ``did:web`` whose
document the agent serves). :func:`sign` adds a JWS over a description's RFC 8785 form,
:func:`verify` checks it offline, and a :class:`TrustPolicy` (required signature, trusted
issuers, did:web resolution through a bounded :class:`DidResolver`) is what ``consume()``, the
runtime and the directory apply before trusting a description.
"""

from ._did import DidResolver, key_from_document
from ._identity import AgentIdentity, Algorithm, did_web_from_url, did_web_url
from ._signing import ALGORITHMS, SIGNATURES, TrustPolicy, issuers, sign, signing_input, verify
from ._tls import MTLS_SCHEME, LocalCA, TlsConfig, peer_identity

__all__ = [
    "ALGORITHMS",
    "MTLS_SCHEME",
    "SIGNATURES",
    "AgentIdentity",
    "Algorithm",
    "DidResolver",
    "LocalCA",
    "TlsConfig",
    "TrustPolicy",
    "did_web_from_url",
    "did_web_url",
    "issuers",
    "key_from_document",
    "peer_identity",
    "sign",
    "signing_input",
    "verify",
]
