"""Read, check and write an Agent Description (run from the repository's root)."""

import json

from wot_agents import AgentDescription, validate

doc = json.load(open("examples/weather-agent.json"))
problems = validate(doc)  # every schema problem, each with a JSON Pointer; [] when valid
agent = AgentDescription.from_dict(doc)  # typed access: agent.capabilities[0].examples
assert agent.to_dict() == doc  # unknown terms are kept: a TD is open-world JSON-LD
text = agent.to_json(indent=2)  # JSON text; json.dumps() needs agent.to_dict(), not the model
print(agent.title, problems, [capability.name for capability in agent.capabilities or []])
