"""Signed descriptions: sign, verify, tamper, and the RFC 8785 form."""

from __future__ import annotations

import base64
import copy
import json
import random
import warnings
from typing import Any

import pytest
import rfc8785
from joserfc import jwk, jws
from joserfc.errors import JoseError

from wot_agents import (
    AgentIdentity,
    SignatureError,
    UntrustedIssuer,
    check,
    sign,
    validate,
    verify,
)
from wot_agents.trust import signing_input
from wot_agents.trust._identity import jwk_of


@pytest.fixture
def identity() -> AgentIdentity:
    return AgentIdentity.generate()


def test_a_signed_td_verifies_and_stays_valid(weather_agent: dict[str, Any], identity: AgentIdentity) -> None:
    signed = sign(weather_agent, identity)
    assert verify(signed) == [identity.did]
    check(signed)  # the signatures member passes the schemas
    entry = signed["signatures"][0]
    assert set(entry) == {"protected", "signature"}


def test_both_key_types_and_two_signers(weather_agent: dict[str, Any], identity: AgentIdentity) -> None:
    other = AgentIdentity.generate("P-256")
    signed = sign(sign(weather_agent, identity), other)
    assert verify(signed) == [identity.did, other.did]
    # Signing again with the same key replaces its signature instead of adding one.
    assert len(sign(signed, other)["signatures"]) == 2


def test_a_tampered_td_is_refused(weather_agent: dict[str, Any], identity: AgentIdentity) -> None:
    signed = sign(weather_agent, identity)
    tampered = copy.deepcopy(signed)
    tampered["title"] = "Not the weather"
    with pytest.raises(SignatureError, match="changed after signing"):
        verify(tampered)


def test_a_signature_moved_to_another_key_is_refused(
    weather_agent: dict[str, Any], identity: AgentIdentity
) -> None:
    # The attacker signs with their own key but claims the victim's kid: the victim's key refuses it.
    attacker = AgentIdentity.generate()
    forged = sign(weather_agent, attacker)
    victim = sign(weather_agent, identity)
    forged["signatures"][0]["protected"] = victim["signatures"][0]["protected"]
    with pytest.raises(SignatureError):
        verify(forged)


def test_only_listed_issuers_are_trusted(weather_agent: dict[str, Any], identity: AgentIdentity) -> None:
    signed = sign(weather_agent, identity)
    with pytest.raises(UntrustedIssuer, match="none of them a trusted issuer"):
        verify(signed, trusted={AgentIdentity.generate().did})
    assert verify(signed, trusted={identity.did}) == [identity.did]


def test_unsigned_and_malformed_signatures(weather_agent: dict[str, Any]) -> None:
    with pytest.raises(SignatureError, match="not signed"):
        verify(weather_agent)
    with pytest.raises(SignatureError, match="array"):
        verify({**weather_agent, "signatures": {"protected": "x"}})
    assert validate({**weather_agent, "signatures": [{"protected": "a.b"}]})  # schema problems


def test_directory_additions_are_outside_the_signature(
    weather_agent: dict[str, Any], identity: AgentIdentity
) -> None:
    signed = sign(weather_agent, identity)
    enriched = dict(signed)
    context = signed["@context"]
    enriched["@context"] = [*context, "https://www.w3.org/2022/wot/discovery"]
    enriched["registration"] = {"created": "2026-01-01T00:00:00Z", "ttl": 60}
    assert verify(enriched) == [identity.did]
    lone = sign({**weather_agent, "@context": "https://www.w3.org/2022/wot/td/v1.1"}, identity)
    lone["@context"] = ["https://www.w3.org/2022/wot/td/v1.1", "https://www.w3.org/2022/wot/discovery"]
    assert verify(lone) == [identity.did]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    alphabet = [chr(c) for c in range(0x80)] + ["é", "\u2028", "\ue000", "\uffff", "😀", "\x7f"]
    kind = rng.randrange(6 if depth < 3 else 4)
    if kind == 0:
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
    if kind == 1:
        return rng.choice([0, -1, 2**53 - 1, -(2**53) + 1, 42])
    if kind == 2:
        return rng.choice([True, False, None])
    if kind == 3:
        return rng.choice([0.5, 1e21, 1e-7, 1e-5, 2.5e-6, 100.0, -0.0, 3.14159, 2.0**53, 1e16 + 2, 123e-3])
    if kind == 4:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {
        "k" + rng.choice(["", "é", "😀", "\ue000"]) + str(i): _random_value(rng, depth + 1) for i in range(4)
    }


def test_the_fast_canonical_form_is_rfc_8785() -> None:
    rng = random.Random(8785)
    for _ in range(3000):
        document = {"id": "urn:x", "v": _random_value(rng)}
        assert signing_input(document) == rfc8785.dumps(document)


def _number_like(rng: random.Random, depth: int = 0) -> Any:
    """Documents whose strings look like JSON numbers and structure (no quotes or backslashes,
    so the text path of signing_input takes them), and numbers of every kind."""
    kind = rng.randrange(5 if depth < 3 else 3)
    if kind == 0:
        return "".join(rng.choice("0123456789.eE-+:,[]{} aé") for _ in range(rng.randrange(8)))
    if kind == 1:
        return rng.choice(
            [0, -1, 10**15, 2**52, 2**53 - 1, -(2**53) + 1, 100.0, -0.0, 0.0, 1.5, 1e-7, 1e-5,
             1e16, 1e21, 123456789012345.0, 1234567890123456.0, 0.1, -2.5e-3, 7.0, -7.0, True, None]
        )  # fmt: skip
    if kind == 2:
        return rng.choice(["a.0,", ":1.0,", "-0.0]", "x", ""])
    if kind == 3:
        return [_number_like(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["k", "é", "1.0", "a:0.0"]) + str(i): _number_like(rng, depth + 1) for i in range(3)}


def test_the_canonical_form_of_numbers_and_number_like_strings_is_rfc_8785() -> None:
    rng = random.Random(7515)
    for _ in range(3000):
        document = {"id": "urn:x", "v": _number_like(rng), "w": _number_like(rng)}
        assert signing_input(document) == rfc8785.dumps(document), document


def _reference_payload(td: dict[str, Any]) -> bytes:
    return rfc8785.dumps({k: v for k, v in td.items() if k != "signatures"})


@pytest.mark.parametrize("algorithm", ["Ed25519", "P-256"])
def test_signatures_cross_check_with_joserfc_both_ways(weather_agent: dict[str, Any], algorithm: str) -> None:
    signer = AgentIdentity.generate(algorithm)  # type: ignore[arg-type]
    public = jwk.import_key(jwk_of(signer.public_key))
    payload = _reference_payload(weather_agent)
    # Ours, checked by joserfc as an A2A verifier would: detached compact and flattened JSON.
    entry = sign(weather_agent, signer)["signatures"][0]
    compact = jws.deserialize_compact(
        f"{entry['protected']}..{entry['signature']}", public, payload=payload, algorithms=[signer.algorithm]
    )
    assert compact.protected["kid"] == signer.key_id
    flattened = {**entry, "payload": base64.urlsafe_b64encode(payload).rstrip(b"=").decode()}
    jws.deserialize_json(flattened, public, algorithms=[signer.algorithm])  # type: ignore[arg-type]
    with pytest.raises(JoseError):
        jws.deserialize_compact(
            f"{entry['protected']}..{entry['signature']}",
            public,
            payload=payload.replace(b"Weather", b"Whether"),
            algorithms=[signer.algorithm],
        )
    # joserfc's, checked by ours: the JSON form with an unprotected header, and EdDSA (RFC 8037).
    algorithms = ["EdDSA", "Ed25519"] if algorithm == "Ed25519" else ["ES256"]
    for alg in algorithms:
        member = {"protected": {"alg": alg, "kid": signer.key_id}, "header": {"typ": "JOSE"}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc: "EdDSA" is deprecated by RFC 9864
            made = jws.serialize_json(member, payload, signer.jose_key(), algorithms=[alg])  # type: ignore[arg-type]
        foreign = {k: made[k] for k in ("protected", "signature", "header")}  # type: ignore[literal-required]
        assert verify({**weather_agent, "signatures": [foreign]}) == [signer.did]
        with pytest.raises(SignatureError, match="changed after signing"):
            verify({**weather_agent, "title": "Whether", "signatures": [foreign]})


def _protected(header: dict[str, Any] | str) -> str:
    text = header if isinstance(header, str) else json.dumps(header)
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def test_protected_headers_are_checked_strictly(
    weather_agent: dict[str, Any], identity: AgentIdentity
) -> None:
    entry = sign(weather_agent, identity)["signatures"][0]
    kid = identity.key_id
    refused = {
        "crit": _protected({"alg": "Ed25519", "kid": kid, "crit": []}),
        "twice": _protected(f'{{"alg": "Ed25519", "kid": "{kid}", "kid": "{kid}"}}'),
        "unencoded payload": _protected({"alg": "Ed25519", "kid": kid, "b64": False}),
        "not base64url": entry["protected"][:-2] + "+/",
        "not one of": _protected({"alg": "none", "kid": kid}),
        "needs a P-256 key": _protected({"alg": "ES256", "kid": kid}),
        "DID URL": _protected({"alg": "Ed25519", "kid": "https://example.com/key"}),
    }
    for reason, protected in refused.items():
        with pytest.raises(SignatureError, match=reason):
            verify({**weather_agent, "signatures": [{**entry, "protected": protected}]})
    with pytest.raises(SignatureError, match="repeats"):
        verify({**weather_agent, "signatures": [{**entry, "header": {"kid": kid}}]})
    with pytest.raises(SignatureError, match="not base64url"):
        verify({**weather_agent, "signatures": [{**entry, "signature": entry["signature"] + "!"}]})
    assert verify({**weather_agent, "signatures": [{**entry, "header": {"note": "x"}}]}) == [identity.did]
