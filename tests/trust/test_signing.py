"""Signed descriptions: sign, verify, tamper, and the RFC 8785 form."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest
import rfc8785

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
