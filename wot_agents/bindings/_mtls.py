"""The server side of mutual TLS as a security scheme: the caller is the DID in its certificate.

The TLS handshake already refused a certificate that is expired or not from the server's CA;
this scheme makes the verified identity count like a token does: the TD says ``lmos:mtls``
(a prefixed extension scheme, TD 1.1 5.3.3) and, with ``identities``, which DIDs may call.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from .._model import SecurityScheme
from ..trust._tls import MTLS_SCHEME
from ._security import Presented

__all__ = ["CertificateAuth"]


@dataclass(frozen=True)
class CertificateAuth:
    """Require a client certificate naming a DID (any, or one of ``identities``).

    Serve with ``tls=`` (a :class:`~wot_agents.trust.TlsConfig`) so the handshake asks for and
    verifies the certificate. Over MQTT the broker checks certificates (it must require them):
    without ``identities`` the scheme is the broker's to enforce; with them it admits no MQTT
    request, since the agent never sees the caller's certificate there.
    """

    identities: Collection[str] | None = None
    name: str = "mtls_sc"

    def definition(self) -> SecurityScheme:
        extra = {"lmos:identities": sorted(self.identities)} if self.identities is not None else {}
        return SecurityScheme(
            scheme=MTLS_SCHEME,
            description="A TLS client certificate from the agent's CA naming the caller's DID "
            "(URI subjectAltName).",
            **extra,
        )

    def authenticate(self, presented: Presented) -> bool:
        if presented.peer is None:
            return False
        return self.identities is None or presented.peer in self.identities

    def challenge(self) -> str | None:
        return None
