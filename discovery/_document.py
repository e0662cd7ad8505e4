"""A TD as the plain JSON object that goes on the wire, whichever form the caller holds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wot_agents import AgentDescription

__all__ = ["Description", "as_document"]

Description = AgentDescription | Mapping[str, Any]


def as_document(description: Description) -> dict[str, Any]:
    return description.to_dict() if isinstance(description, AgentDescription) else dict(description)
