"""Mutual TLS: a local CA for labs and tests, agent certificates that name the agent's DID, and
the TLS contexts every binding uses.

An agent certificate carries the agent's DID as a URI subjectAltName (and as its subject's
common name when it fits), so a server that verified the client's certificate against its CA
knows *which agent* calls: :func:`peer_identity` reads it, and it feeds the same authorization
as a token does. The CA and the certificates are made with pyca's cryptography (P-256 keys,
the curve every TLS stack and mosquitto accept); private keys are written 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .._errors import TrustError

log = logging.getLogger("wot_agents.trust")

__all__ = ["MTLS_SCHEME", "LocalCA", "TlsConfig", "peer_identity"]

#: The TD security scheme (a prefixed extension, TD 1.1 5.3.3) of an endpoint that requires a
#: client certificate from the agent's CA; ``lmos:identities`` may list the DIDs admitted.
MTLS_SCHEME = "lmos:mtls"


def _write_private(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class TlsConfig:
    """A certificate, its key and the CA that vouches for peers: both sides of mutual TLS.

    ``server_context()`` asks for and verifies client certificates (a presented one that is
    expired or from another CA ends the handshake); one without a certificate still gets the TD
    and the DID document, which are public, and ``CertificateAuth`` (that ``serve(tls=)`` adds)
    refuses it everything else. ``client_context()`` presents this certificate and verifies the
    server's. Contexts are made once (they read files).
    """

    cert: Path
    key: Path
    ca: Path
    _contexts: dict[str, ssl.SSLContext] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dir(cls, directory: str | os.PathLike[str], name: str) -> TlsConfig:
        """``name.crt`` and ``name.key`` issued by ``wot-agents ca`` in ``directory`` (with ``ca.crt``)."""
        base = Path(directory)
        config = cls(base / f"{name}.crt", base / f"{name}.key", base / "ca.crt")
        for path in (config.cert, config.key, config.ca):
            if not path.is_file():
                raise TrustError(
                    f"{path} is missing: issue it with 'wot-agents ca issue {name} --dir {base}'"
                )
        return config

    def server_context(self) -> ssl.SSLContext:
        context = self._contexts.get("server")
        if context is None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.verify_mode = ssl.CERT_OPTIONAL
            context.load_cert_chain(self.cert, self.key)
            context.sslobject_class = _LoggedHandshakes
            self._contexts["server"] = context
        return context

    def client_context(self) -> ssl.SSLContext:
        """The caller's side; a certificate that is not valid now is refused here, with its dates,
        rather than by a server that would only reset the connection (TLS 1.3 reports a refused
        client certificate after the handshake)."""
        context = self._contexts.get("client")
        if context is None:
            certificate = x509.load_pem_x509_certificate(self.cert.read_bytes())
            now = datetime.datetime.now(datetime.UTC)
            if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
                start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
                raise TrustError(
                    f"the certificate {self.cert} is valid from {start:%Y-%m-%d %H:%M} "
                    f"to {end:%Y-%m-%d %H:%M} UTC, not now: issue a new one"
                )
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(self.cert, self.key)
            self._contexts["client"] = context
        return context


class _LoggedHandshakes(ssl.SSLObject):
    """Server-side TLS that logs why a client was refused (asyncio only does so in debug mode)."""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except ssl.SSLCertVerificationError as exc:
            log.warning("refused a TLS client: %s", exc.verify_message or exc.reason)
            raise
        except ssl.SSLError as exc:
            if exc.reason in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "CERTIFICATE_VERIFY_FAILED"):
                log.warning("refused a TLS client: %s", exc.reason.lower().replace("_", " "))
            raise


def peer_identity(peercert: Mapping[str, Any] | None) -> str | None:
    """The DID in a verified peer certificate (``ssl`` ``getpeercert()``), from its URI SAN."""
    if not peercert:
        return None
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "URI" and isinstance(value, str) and value.startswith("did:"):
            return value
    return None


@dataclass(frozen=True)
class LocalCA:
    """A certificate authority kept in a directory (``ca.crt``, ``ca.key``): for labs and tests."""

    directory: Path
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def create(
        cls, directory: str | os.PathLike[str], *, name: str = "wot-agents lab CA", days: int = 3650
    ) -> LocalCA:
        base = Path(directory)
        if (base / "ca.key").exists():
            raise TrustError(f"{base} already holds a CA (ca.key); load it, or choose another directory")
        base.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(base / "ca.key", _pem_key(key))
        (base / "ca.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return cls(base, certificate, key)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> LocalCA:
        base = Path(directory)
        try:
            certificate = x509.load_pem_x509_certificate((base / "ca.crt").read_bytes())
            key = serialization.load_pem_private_key((base / "ca.key").read_bytes(), password=None)
        except FileNotFoundError as exc:
            raise TrustError(
                f"no CA in {base} ({exc.filename} missing): create one with 'wot-agents ca init'"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TrustError(f"{base / 'ca.key'} is not an EC key made by 'wot-agents ca init'")
        return cls(base, certificate, key)

    def issue(
        self,
        name: str,
        *,
        did: str | None = None,
        hosts: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
        days: float = 365,
        not_before: datetime.datetime | None = None,
    ) -> TlsConfig:
        """An agent (or broker) certificate ``name.crt`` + ``name.key``, for servers and clients alike.

        ``did`` goes into the URI subjectAltName (and the subject's CN when it fits 64
        characters): the identity a server sees when this certificate calls it. ``hosts`` are
        the DNS names and addresses it may serve under.
        """
        if not name or "/" in name or name.startswith("."):
            raise TrustError(f"{name!r} is not a usable certificate name (a file name without '/')")
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        common_name = did if did is not None and len(did) <= 64 else name
        names: list[x509.GeneralName] = []
        if did is not None:
            names.append(x509.UniformResourceIdentifier(did))
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        _write_private(self.directory / f"{name}.key", _pem_key(key))
        (self.directory / f"{name}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return TlsConfig(
            self.directory / f"{name}.crt", self.directory / f"{name}.key", self.directory / "ca.crt"
        )
