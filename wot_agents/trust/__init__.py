"""Trust: agent identities (DIDs), signed descriptions, groups, and who may call whom.

An agent's :class:`AgentIdentity` is a key pair and a DID (``did:key``, or a ``did:web`` whose
document the agent serves). :func:`sign` adds a JWS over a description's RFC 8785 form,
:func:`verify` checks it offline, and a :class:`TrustPolicy` (required signature, trusted
issuers, did:web resolution through a bounded :class:`DidResolver`) is what ``consume()``, the
runtime and the directory apply before trusting a description. :class:`LocalCA` and
:class:`TlsConfig` give mutual TLS with certificates naming the DID. Groups live in a directory
(:class:`GroupClient`); a :class:`Membership` keeps a member's short-lived credential fresh, and
an :class:`AccessPolicy` says which groups or identities may use which affordance.
"""

from ._did import DidResolver, key_from_document
from ._groups import (
    MEMBERSHIP_HEADER,
    MEMBERSHIP_TTL,
    PROOF_HEADER,
    AccessPolicy,
    Caller,
    GroupAuthority,
    GroupClient,
    Membership,
    check_access,
    proof,
    verify_membership,
    verify_proof,
)
from ._identity import AgentIdentity, Algorithm, did_web_from_url, did_web_url
from ._signing import ALGORITHMS, SIGNATURES, TrustPolicy, issuers, sign, signing_input, verify
from ._tls import MTLS_SCHEME, LocalCA, TlsConfig, peer_identity

__all__ = [
    "ALGORITHMS",
    "MEMBERSHIP_HEADER",
    "MEMBERSHIP_TTL",
    "MTLS_SCHEME",
    "PROOF_HEADER",
    "SIGNATURES",
    "AccessPolicy",
    "AgentIdentity",
    "Algorithm",
    "Caller",
    "DidResolver",
    "GroupAuthority",
    "GroupClient",
    "LocalCA",
    "Membership",
    "TlsConfig",
    "TrustPolicy",
    "check_access",
    "did_web_from_url",
    "did_web_url",
    "issuers",
    "key_from_document",
    "peer_identity",
    "proof",
    "sign",
    "signing_input",
    "verify",
    "verify_membership",
    "verify_proof",
]
