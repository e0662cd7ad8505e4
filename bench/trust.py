"""Cost of trust: signing and verifying an Agent Description (per TD).

Measures, on a realistic ~4 KB Agent Description: its RFC 8785 form (the orjson fast path that
``signing_input`` takes, and the rfc8785 reference), signing and verifying it with Ed25519 and
with P-256, and the bare Ed25519 verification underneath (what the JOSE layer adds is the rest).
Target: verifying an Ed25519-signed 4 KB TD in <= 0.2 ms, so a directory that verifies every
write still registers >= 1,000 TDs/s.

    nice -n 10 .venv/bin/python bench/trust.py
"""

from __future__ import annotations

import json
import os
from typing import Any

import rfc8785
from validation import measure, realistic_agent

from wot_agents import AgentIdentity, sign, verify
from wot_agents.trust import signing_input


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


if __name__ == "__main__":
    main()
