"""Mutual TLS on every binding, with certificates from `wot-agents ca` naming agents' DIDs."""

from __future__ import annotations

import datetime
import logging
import ssl
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from wot_agents import (
    AccessPolicy,
    AgentDescription,
    AgentIdentity,
    ConnectError,
    ConsumedThing,
    DidResolver,
    RemoteError,
    RequestTimeout,
    TrustError,
    TrustPolicy,
    consume,
)
from wot_agents.bindings import CertificateAuth
from wot_agents.bindings.http import HttpClient
from wot_agents.bindings.mqtt import LocalBroker
from wot_agents.bindings.websocket import WebSocketClient
from wot_agents.cli import main
from wot_agents.trust import LocalCA, TlsConfig

from .conftest import make_agent


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A CA, an agent (server) and two callers: one whose DID is admitted, one whose is not."""
    directory = tmp_path_factory.mktemp("ca")
    ca = LocalCA.create(directory)
    agent, caller, stranger = AgentIdentity.generate(), AgentIdentity.generate(), AgentIdentity.generate()
    return {
        "dir": directory,
        "ca": ca,
        "agent": ca.issue("agent", did=agent.did),
        "caller_did": caller.did,
        "caller": ca.issue("caller", did=caller.did),
        "stranger": ca.issue("stranger", did=stranger.did),
        "broker": ca.issue("broker"),
    }


def test_the_ca_command_issues_certificates_naming_the_agent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ca", "init", "--dir", str(tmp_path)]) == 0
    assert main(["ca", "init", "--dir", str(tmp_path)]) == 1  # never overwrites a CA
    assert "already holds a CA" in capsys.readouterr().err
    key_file = tmp_path / "agent.key.pem"
    assert main(["ca", "issue", "billing", "--dir", str(tmp_path), "--identity", str(key_file)]) == 0
    did = AgentIdentity.load_or_create(key_file).did
    assert did in capsys.readouterr().out
    for private in ("ca.key", "billing.key"):
        assert stat.S_IMODE((tmp_path / private).stat().st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate((tmp_path / "billing.crt").read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert did in names.get_values_for_type(x509.UniformResourceIdentifier)
    assert certificate.subject.rfc4514_string() == f"CN={did}"
    assert main(["ca", "issue", "x", "--dir", str(tmp_path / "none")]) == 1
    assert "no CA in" in capsys.readouterr().err


@pytest.fixture
async def served(lab: dict[str, object]) -> AsyncIterator[str]:
    agent_tls = lab["agent"]
    assert isinstance(agent_tls, TlsConfig)
    admitted = {str(lab["caller_did"])}
    async with make_agent().serve(
        http=True, ws=True, tls=agent_tls, security=CertificateAuth(admitted)
    ) as running:
        yield running.description.to_dict()  # type: ignore[misc]


@pytest.mark.parametrize("scheme", ["https", "wss"])
async def test_a_caller_with_an_admitted_certificate_is_served(
    lab: dict[str, object], served: dict[str, object], scheme: str
) -> None:
    td = served
    assert td["securityDefinitions"]["mtls_sc"]["scheme"] == "lmos:mtls"  # type: ignore[index]
    async with consume(td, tls=lab["caller"], prefer=[scheme]) as thing:  # type: ignore[arg-type]
        assert await thing.invoke_action("add", {"a": 40, "b": 2}) == 42


async def test_a_certificate_naming_another_agent_is_not_admitted(
    lab: dict[str, object], served: dict[str, object]
) -> None:
    async with consume(served, tls=lab["stranger"], prefer=["https"]) as thing:  # type: ignore[arg-type]
        with pytest.raises(RemoteError) as refused:
            await thing.invoke_action("add", {"a": 1})
    assert refused.value.status == 401


def _raw_client(config: TlsConfig) -> ssl.SSLContext:
    """A client context that skips the SDK's own checks: what an attacker would use."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(config.ca))
    context.load_cert_chain(config.cert, config.key)
    return context


@pytest.mark.parametrize("scheme", ["https", "wss"])
async def test_expired_and_foreign_certificates_are_refused(
    lab: dict[str, object],
    served: dict[str, object],
    tmp_path: Path,
    scheme: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ca = lab["ca"]
    assert isinstance(ca, LocalCA)
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    expired = ca.issue("expired", did=str(lab["caller_did"]), days=1, not_before=long_ago)
    foreign_ca = LocalCA.create(tmp_path / "foreign")
    foreign = foreign_ca.issue("caller", did=str(lab["caller_did"]))
    # The foreign certificate trusts the real CA for the server, so only the client side is wrong.
    foreign = TlsConfig(foreign.cert, foreign.key, ca.directory / "ca.crt")
    with pytest.raises(TrustError, match="not now: issue a new one"):
        async with consume(served, tls=expired, prefer=[scheme]) as thing:
            await thing.invoke_action("add", {"a": 1})
    client = HttpClient if scheme == "https" else WebSocketClient
    caplog.set_level(logging.WARNING, logger="wot_agents.trust")
    for bad in (expired, foreign):
        async with ConsumedThing(
            AgentDescription.from_dict(served),
            credentials=bad,
            prefer=[scheme],
            timeout=10,
            clients=[client(tls=_raw_client(bad))],
        ) as thing:
            with pytest.raises(ConnectError):  # the server ended the handshake
                await thing.invoke_action("add", {"a": 1})
    assert "refused a TLS client: certificate has expired" in caplog.text
    assert "refused a TLS client: unable to get local issuer certificate" in caplog.text


async def test_mqtt_over_tls_to_a_broker_that_requires_certificates(lab: dict[str, object]) -> None:
    broker_tls, agent_tls, caller_tls = lab["broker"], lab["agent"], lab["caller"]
    assert isinstance(broker_tls, TlsConfig) and isinstance(agent_tls, TlsConfig)
    async with LocalBroker(tls=broker_tls) as broker:
        assert broker.url.startswith("mqtts://")
        async with make_agent().serve(mqtt=broker.url, tls=agent_tls) as running:
            td = running.description
            async with consume(td, tls=caller_tls) as thing:  # type: ignore[arg-type]
                assert await thing.invoke_action("add", {"a": 1, "b": 2}) == 3


# paho-mqtt leaves the socket of a failed TLS handshake to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_the_broker_refuses_a_foreign_ca_certificate(lab: dict[str, object], tmp_path: Path) -> None:
    broker_tls, agent_tls, ca = lab["broker"], lab["agent"], lab["ca"]
    assert isinstance(broker_tls, TlsConfig) and isinstance(agent_tls, TlsConfig) and isinstance(ca, LocalCA)
    foreign = LocalCA.create(tmp_path / "foreign").issue("caller", did=str(lab["caller_did"]))
    foreign = TlsConfig(foreign.cert, foreign.key, ca.directory / "ca.crt")
    async with LocalBroker(tls=broker_tls) as broker:
        async with make_agent().serve(mqtt=broker.url, tls=agent_tls) as running:
            async with consume(running.description, tls=foreign, timeout=2) as thing:
                # TLS 1.3: the broker drops the connection after the handshake, before CONNACK.
                with pytest.raises((ConnectError, RequestTimeout), match="MQTT broker"):
                    await thing.invoke_action("add", {"a": 1})


async def test_did_web_over_https_with_the_lab_ca(lab: dict[str, object]) -> None:
    agent_tls, caller_tls = lab["agent"], lab["caller"]
    assert isinstance(agent_tls, TlsConfig) and isinstance(caller_tls, TlsConfig)
    identity = AgentIdentity.generate()
    agent = make_agent()
    async with agent.serve(http=True, tls=agent_tls, identity=identity, did_web=True) as running:
        assert running.identity is not None
        did = running.identity.did
        # The agent asks every caller for a certificate: the resolver presents the caller's.
        policy = TrustPolicy(trusted={did}, resolver=DidResolver(ssl=caller_tls.client_context()))
        assert await policy.check(running.description) == [did]


async def test_an_affordance_only_for_one_identity_proven_by_its_certificate(lab: dict[str, object]) -> None:
    agent_tls, caller, stranger = lab["agent"], lab["caller"], lab["stranger"]
    assert (
        isinstance(agent_tls, TlsConfig) and isinstance(caller, TlsConfig) and isinstance(stranger, TlsConfig)
    )
    access = AccessPolicy(rules={"add": {str(lab["caller_did"])}})
    async with make_agent().serve(http=True, ws=True, tls=agent_tls, access=access) as running:
        td = running.description.to_dict()
        assert td["actions"]["add"]["lmos:allow"] == [lab["caller_did"]]
        for scheme in ("https", "wss"):
            async with consume(td, tls=caller, prefer=[scheme]) as thing:
                assert await thing.invoke_action("add", {"a": 1}) == 2
            async with consume(td, tls=stranger, prefer=[scheme]) as thing:
                assert await thing.read_property("station") == "Berlin"  # no rule: open
                with pytest.raises(RemoteError) as refused:
                    await thing.invoke_action("add", {"a": 1})
                assert refused.value.status == 403
