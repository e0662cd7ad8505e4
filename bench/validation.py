"""Cost of validating one Agent Description, and of converting it to RDF.

Compares the validators that could check TD 1.1 documents on every directory write:
jsonschema (pure Python), fastjsonschema (generated Python) and jsonschema-rs (Rust, what
wot_agents.validate uses), on a realistic agent (several actions, forms, capabilities).

    .venv/bin/python bench/validation.py      (fastjsonschema is optional: pip install it to compare)
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import td_schemas
from wot_agents import Agent, Capability, Form, jsonld, validate


def realistic_agent(index: int = 0) -> dict[str, Any]:
    """An agent like a real deployment's: 4 actions, a property, an event, 4 capabilities, 2 bindings."""
    agent = Agent(
        f"Agent {index}",
        id=f"urn:example:agent:{index}",
        description="Handles billing questions: bills, payments, addresses and refunds.",
        version="1.4.2",
        capabilities=[
            Capability(
                id=f"urn:example:capability:{index}:{topic}",
                name=topic.title(),
                version="1.0",
                description=f"Lets a customer manage their {topic}.",
                examples=[f"show my {topic}", f"change my {topic}", f"why is my {topic} wrong?"],
            )
            for topic in ("bill", "payment", "address", "refund")
        ],
        tenants=["acme", "globex"],
        channels=["web", "app"],
    )
    for name in ("view_bill", "pay_bill", "change_address", "request_refund"):

        def handler(customer_id: str, amount: float = 0.0, note: str | None = None) -> dict[str, str]:
            return {}

        agent.action(name=name, description=f"{name.replace('_', ' ')} for a customer")(handler)
    agent.property("open_tickets", int, default=0, observable=True)
    agent.event("bill_ready", str)

    class Forms:
        def forms(self, kind: str, name: str) -> list[Form]:
            return [
                Form(
                    href=f"http://10.0.0.{index % 250}:8080/{kind}s/{name}",
                    content_type="application/json",
                ),
                Form(href="mqtt://broker:1883", **{"mqv:topic": f"agents/{index}/{kind}s/{name}"}),
            ]

        def thing_forms(self) -> list[Form]:
            return []

    return agent.description(forms=[Forms()]).to_dict()  # type: ignore[list-item]


def measure(label: str, run: Callable[[], Any], repeat: int) -> float:
    run()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    median = statistics.median(samples)
    print(f"{label:<48} p50 {median:8.3f} ms   p99 {samples[int(len(samples) * 0.99) - 1]:8.3f} ms")
    return median


def main() -> None:
    document = realistic_agent()
    print(f"one Agent Description: {len(json.dumps(document))} bytes, {len(document['actions'])} actions\n")
    schema = td_schemas.load(td_schemas.SCHEMA_FILES["td"])

    import jsonschema
    import jsonschema_rs

    slow = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    compiled = jsonschema_rs.validator_for(schema, validate_formats=True)
    measure("jsonschema (TD schema, all errors)", lambda: list(slow.iter_errors(document)), 200)
    if importlib.util.find_spec("fastjsonschema"):
        import fastjsonschema

        generated = fastjsonschema.compile(schema)
        measure("fastjsonschema (TD schema, first error only)", lambda: generated(document), 500)
    measure("jsonschema-rs (TD schema, all errors)", lambda: list(compiled.iter_errors(document)), 2000)
    measure("wot_agents.validate (TD + LMOS schemas)", lambda: validate(document), 2000)
    print()
    measure("wot_agents.jsonld.to_nquads (pyld, offline)", lambda: jsonld.to_nquads(document), 50)


if __name__ == "__main__":
    main()
