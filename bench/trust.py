"""Cost of trust: signing and verifying an Agent Description (per TD).

Measures, on a realistic ~4 KB Agent Description: its RFC 8785 form (the orjson fast path that
``signing_input`` takes, and the rfc8785 reference), signing and verifying it with Ed25519 and
with P-256, and the bare Ed25519 verification underneath (what the JOSE layer adds is the rest).
Target: verifying an Ed25519-signed 4 KB TD in <= 0.2 ms, so a directory that verifies every
write still registers >= 1,000 TDs/s. Then the cost per HTTP call of mutual TLS (on a kept-alive
connection, and with a new connection each time: the handshake) and of a group membership
credential (the agent verifies the credential and the caller's proof on each request), each
against the same call without it.

    nice -n 10 .venv/bin/python bench/trust.py
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from typing import Any

import rfc8785
from validation import measure, realistic_agent

from wot_agents import AccessPolicy, Agent, AgentIdentity, ConsumedThing, consume, sign, verify
from wot_agents.bindings import CertificateAuth
from wot_agents.trust import GroupAuthority, LocalCA, TlsConfig, proof, signing_input


def four_kb_agent() -> dict[str, Any]:
    document = realistic_agent()
    while len(json.dumps(document)) < 4096:
        document["description"] += " It answers in the customer's language."
    return document


def main() -> None:
    print(f"machine: {os.cpu_count()} cores, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    document = four_kb_agent()
    print(f"one Agent Description: {len(json.dumps(document))} bytes\n")
    payload = {k: v for k, v in document.items() if k != "signatures"}
    measure("RFC 8785 form: signing_input (orjson fast path)", lambda: signing_input(document), 5000)
    measure("RFC 8785 form: rfc8785.dumps (reference)", lambda: rfc8785.dumps(payload), 1000)
    for algorithm in ("Ed25519", "P-256"):
        identity = AgentIdentity.generate(algorithm)  # type: ignore[arg-type]
        signed = sign(document, identity)
        print()
        measure(f"sign ({algorithm})", lambda identity=identity: sign(document, identity), 2000)
        measure(f"verify ({algorithm}, did:key)", lambda signed=signed: verify(signed), 5000)
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    data = signing_input(document)
    signature = key.sign(data)
    public = key.public_key()
    print()
    measure("bare Ed25519 verify, same bytes (cryptography)", lambda: public.verify(signature, data), 5000)


class _LocalMembership:
    """A member's credential from a local authority (what Membership gets from a directory)."""

    def __init__(self, authority: GroupAuthority, member: AgentIdentity) -> None:
        self.token, self.expires = authority.issue(member.did, member.key_id, ["ops"])
        self.member = member
        self._proofs: dict[str, str] = {}

    def headers(self, audience: str) -> dict[str, str]:
        if audience not in self._proofs:  # one proof per agent for the credential's life, as Membership
            self._proofs[audience] = proof(self.member, audience, ttl=self.expires - time.time())
        return {"Lmos-Membership": f"Bearer {self.token}", "Lmos-Proof": self._proofs[audience]}


async def _calls(label: str, make: object, repeat: int, *, fresh: bool = False) -> float:
    samples: list[float] = []
    thing: ConsumedThing | None = None
    for index in range(repeat + 10):
        if thing is None or fresh:
            if thing is not None:
                await thing.aclose()
            thing = make()  # type: ignore[operator]
        started = time.perf_counter()
        await thing.invoke_action("add", {"a": 1, "b": 2})
        if index >= 10:
            samples.append((time.perf_counter() - started) * 1000)
    assert thing is not None
    await thing.aclose()
    samples.sort()
    median = samples[len(samples) // 2]
    print(f"{label:<52} p50 {median:7.3f} ms   p99 {samples[int(len(samples) * 0.99) - 1]:7.3f} ms")
    return median


def _agent() -> Agent:
    agent = Agent("Bench", id="urn:bench:trust")

    @agent.action
    async def add(a: int, b: int) -> int:
        return a + b

    return agent


async def calls() -> None:
    print("\nper HTTP call (invokeaction, loopback):")
    with tempfile.TemporaryDirectory() as folder:
        ca = LocalCA.create(folder)
        server, client = ca.issue("agent"), ca.issue("caller", did=AgentIdentity.generate().did)
        async with _agent().serve(http=True) as running:
            td = running.description
            plain = await _calls("plain http, kept-alive", lambda: consume(td), 500)
            fresh = await _calls("plain http, new connection each call", lambda: consume(td), 100, fresh=True)
        async with _agent().serve(http=True, tls=server, security=CertificateAuth()) as running:
            td = running.description
            kept = await _calls(
                "https + client certificate, kept-alive", lambda: consume(td, tls=client), 500
            )
            new = await _calls(
                "https + client certificate, new connection (handshake)",
                lambda: consume(td, tls=TlsConfig(client.cert, client.key, client.ca)),
                100,
                fresh=True,
            )
        print(f"  mutual TLS adds {kept - plain:+.3f} ms a call, {new - fresh:+.3f} ms a new connection")
        authority, member = GroupAuthority(AgentIdentity.generate()), AgentIdentity.generate()
        access = AccessPolicy(rules={"add": {"group:ops"}}, authorities={authority.did})
        async with _agent().serve(http=True, access=access) as running:
            td = running.description
            credential = _LocalMembership(authority, member)
            grouped = await _calls(
                "http + membership credential and proof", lambda: consume(td, credentials=credential), 500
            )
        print(f"  a group credential adds {grouped - plain:+.3f} ms a call (verified once per credential)")


async def directory_writes(count: int = 1000, rounds: int = 3) -> None:
    """Registrations per second through the directory's service, with and without signatures.

    Rounds alternate between the two, each on a new directory; the best round of each is
    printed with its CPU time per write in this process (the SPARQL index works in its own
    process), which a busy shared machine inflates less than the rate.
    """
    from registry import Directory, DirectorySettings

    print(f"\ndirectory writes ({count} PUTs through registry.Directory, SQLite in memory, 16 at once,")
    print(f"best of {rounds} rounds):")
    identity = AgentIdentity.generate()
    plain = [{**four_kb_agent(), "id": f"urn:bench:trust:{i}"} for i in range(count)]
    signed = [sign(td, identity) for td in plain]
    cases = {
        "unsigned TDs": (plain, DirectorySettings()),
        "signed TDs, signatures required": (signed, DirectorySettings(require_signatures=True)),
    }
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for label, (tds, settings) in cases.items():
            async with Directory(settings) as directory:
                started, cpu = time.perf_counter(), time.process_time()
                for batch in range(0, count, 16):  # 16 writes in flight, as bench/directory.py's clients
                    writes = tds[batch : batch + 16]
                    await asyncio.gather(*(directory.put(str(td["id"]), td) for td in writes))
                rate = count / (time.perf_counter() - started)
                per_write = (time.process_time() - cpu) / count * 1000
            if rate > best.get(label, (0.0, 0.0))[0]:
                best[label] = (rate, per_write)
    for label, (rate, per_write) in best.items():
        print(f"{label:<52} {rate:8.0f} writes/s  ({per_write:.2f} ms CPU a write)")
    print(f"  (load {' '.join(f'{x:.2f}' for x in os.getloadavg())})")


if __name__ == "__main__":
    main()
    asyncio.run(calls())
    asyncio.run(directory_writes())
