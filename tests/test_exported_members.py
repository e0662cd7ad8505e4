"""The public API is exactly what the package ``__all__`` lists (the httpx guard)."""

from __future__ import annotations

import wot_agents


def test_all_is_sorted_and_complete() -> None:
    exported = [name for name in wot_agents.__all__ if name != "__version__"]
    assert exported == sorted(exported, key=lambda name: (not name.isupper(), name))
    for name in wot_agents.__all__:
        assert hasattr(wot_agents, name), name


def test_public_members_come_from_private_modules() -> None:
    for name in wot_agents.__all__:
        member = getattr(wot_agents, name)
        if not callable(member) or getattr(member, "__module__", None) == "typing":
            continue  # constants and type aliases carry no module of their own
        assert member.__module__.startswith("wot_agents."), name
