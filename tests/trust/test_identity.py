"""Agent identities: key files, did:key, did:web and the DID document."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from wot_agents import AgentIdentity, DidResolver, TrustError
from wot_agents.trust import did_web_from_url, did_web_url, key_from_document
from wot_agents.trust._identity import did_key_public_key, multibase_of


def test_key_file_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "agent.key"
    first = AgentIdentity.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = AgentIdentity.load_or_create(path)
    assert again.did == first.did
    assert first.did.startswith("did:key:z6Mk")  # Ed25519 by default


def test_p256_keys(tmp_path: Path) -> None:
    identity = AgentIdentity.load_or_create(tmp_path / "p256.key", algorithm="P-256")
    assert identity.did.startswith("did:key:zDn")
    assert identity.algorithm == "ES256"
    assert AgentIdentity.load_or_create(tmp_path / "p256.key").did == identity.did


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.key"
    AgentIdentity.load_or_create(path)
    path.chmod(0o644)
    with pytest.raises(TrustError, match="chmod 600"):
        AgentIdentity.load_or_create(path)


def test_did_key_round_trips_to_the_public_key() -> None:
    for algorithm in ("Ed25519", "P-256"):
        identity = AgentIdentity.generate(algorithm)  # type: ignore[arg-type]
        key = did_key_public_key(identity.key_id)
        assert multibase_of(key) == multibase_of(identity.public_key)


def test_did_key_of_a_known_ed25519_key() -> None:
    # The did:key spec's first Ed25519 test vector.
    did = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
    assert multibase_of(did_key_public_key(did)) == did.removeprefix("did:key:")


@pytest.mark.parametrize(
    ("url", "did", "document"),
    [
        ("https://example.com", "did:web:example.com", "https://example.com/.well-known/did.json"),
        (
            "https://example.com:8443/agents/billing",
            "did:web:example.com%3A8443:agents:billing",
            "https://example.com:8443/agents/billing/did.json",
        ),
    ],
)
def test_did_web_names_and_locations(url: str, did: str, document: str) -> None:
    assert did_web_from_url(url) == did
    assert did_web_url(did) == document


def test_did_web_document_lists_the_key_and_the_td() -> None:
    identity = AgentIdentity.generate().with_web("https://agents.example.com/billing")
    document = identity.did_document(td_url="https://agents.example.com/billing")
    assert document["id"] == identity.did == "did:web:agents.example.com:billing"
    assert document["assertionMethod"] == [identity.key_id]
    assert document["verificationMethod"][0]["type"] == "Ed25519VerificationKey2018"
    assert document["service"] == [
        {
            "id": f"{identity.did}#td",
            "type": "WotThing",
            "serviceEndpoint": "https://agents.example.com/billing",
        }
    ]
    assert key_from_document(document, identity.key_id).as_dict()["x"] == identity.public_jwk["x"]
    p256 = AgentIdentity.generate("P-256").with_web("https://agents.example.com/p")
    assert key_from_document(p256.did_document(), p256.key_id).as_dict()["x"] == p256.public_jwk["x"]


def test_a_key_not_meant_for_assertions_cannot_sign() -> None:
    identity = AgentIdentity.generate().with_web("https://agents.example.com/a")
    document = identity.did_document()
    document["assertionMethod"] = []
    with pytest.raises(TrustError, match="not an assertion method"):
        key_from_document(document, identity.key_id)


def test_resolved_keys_are_kept_least_recently_used_first_out() -> None:
    resolver = DidResolver(max_keys=2)
    first, second, third = (AgentIdentity.generate().key_id for _ in range(3))
    key = resolver.cached_key(first)
    resolver.cached_key(second)
    assert resolver.cached_key(first) is key  # kept, and now the most recently used
    resolver.cached_key(third)
    assert list(resolver._keys) == [first, third]  # the least recently used went
