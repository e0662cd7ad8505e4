"""LMOS channels: version ranges (npm and Ivy), the resolver, and the canary split."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from wot_agents import (
    AgentDescription,
    Channel,
    ChannelRollout,
    Version,
    VersionRange,
    load_channel_resources,
    resolve_channel,
)


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        (">=1.0.0", ["1.0.0", "1.0", "7.3.1"], ["0.9.9", "1.0.0-rc.1"]),
        ("^1.2", ["1.2.0", "1.9.9"], ["1.1.9", "2.0.0"]),
        ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
        ("^0.0.3", ["0.0.3"], ["0.0.4"]),
        ("~1.2", ["1.2.0", "1.2.7"], ["1.3.0", "1.1.0"]),
        ("~1.2.3", ["1.2.3", "1.2.9"], ["1.3.0", "1.2.2"]),
        ("1.x", ["1.0.0", "1.99.0"], ["2.0.0", "0.9.0"]),
        ("1.2.x", ["1.2.0", "1.2.5"], ["1.3.0"]),
        ("1.0", ["1.0.0", "1.0.9"], ["1.1.0"]),
        ("1.0.0", ["1.0.0", "1.0", "1"], ["1.0.1"]),
        ("*", ["0.0.1", "99.0.0"], []),
        (">1.2", ["1.3.0"], ["1.2.9", "1.2.0"]),
        ("<=1.2", ["1.2.9"], ["1.3.0"]),
        ("1.0.0 - 2.0.0", ["1.0.0", "2.0.0"], ["2.0.1", "0.9.0"]),
        ("1.0.0 - 2", ["2.9.0"], ["3.0.0"]),
        (">=1.0.0 <2.0.0", ["1.5.0"], ["2.0.0"]),
        ("<1.0.0 || >=3.0.0", ["0.5.0", "3.1.0"], ["1.0.0", "2.9.9"]),
        ("[1.0,2.0)", ["1.0.0", "1.9.9"], ["2.0.0", "0.9.9"]),
        ("[1.0,2.0]", ["2.0.0"], ["2.0.1"]),
        ("]1.0,2.0[", ["1.0.1"], ["1.0.0", "2.0.0"]),
        ("(1.0,2.0]", ["2.0.0"], ["1.0.0"]),
        ("[1.0,)", ["1.0.0", "42.0.0"], ["0.9.0"]),
        ("(,2.0]", ["0.0.1", "2.0.0"], ["2.0.1"]),
        ("1.0.+", ["1.0.0", "1.0.7"], ["1.1.0"]),
    ],
)
def test_version_ranges(text: str, inside: list[str], outside: list[str]) -> None:
    accepted = VersionRange.parse(text)
    for version in inside:
        assert version in accepted, (text, version)
    for version in outside:
        assert version not in accepted, (text, version)


def test_versions_coerce_and_order() -> None:
    assert Version.parse("v1.2") == Version(1, 2, 0)
    assert Version.parse("1.0.0-alpha") < Version.parse("1.0.0-alpha.1") < Version.parse("1.0.0-beta")
    assert Version.parse("1.0.0-rc.1") < Version.parse("1.0.0") < Version.parse("1.0.1")
    with pytest.raises(ValueError, match="not a version"):
        Version.parse("latest-and-greatest")
    with pytest.raises(ValueError):
        VersionRange.parse(">=banana")


def agent(agent_id: str, *capabilities: tuple[str, str, str | None]) -> AgentDescription:
    return AgentDescription.from_dict(
        {
            "@context": [
                "https://www.w3.org/2022/wot/td/v1.1",
                {"lmos": "https://eclipse.dev/lmos/protocol/v1"},
            ],
            "@type": "lmos:Agent",
            "id": agent_id,
            "title": agent_id.rsplit(":", 1)[-1],
            "base": f"http://{agent_id.rsplit(':', 1)[-1]}.example:8080/",
            "lmos:capabilities": [
                {"id": cap_id, "name": name, **({"version": version} if version else {})}
                for cap_id, name, version in capabilities
            ],
            "securityDefinitions": {"nosec_sc": {"scheme": "nosec"}},
            "security": "nosec_sc",
        }
    )


CHANNEL_YAML = """
apiVersion: "lmos.eclipse/v1"
kind: "Channel"
metadata:
  name: "acme-web-stable"
  labels:
    channel: "web"
    version: "1.0.0"
    tenant: "acme"
    subset: "stable"
spec:
  requiredCapabilities:
    - id: "urn:telekom:capability:billing:view-bill"
      version: "1.0.0"
    - id: "urn:telekom:capability:billing:change-address"
      version: ">=1.0.0"
      strategy: HIGHEST
"""


def test_the_lmos_example_channel_resolves() -> None:
    (channel,) = load_channel_resources(yaml.safe_load_all(CHANNEL_YAML))
    assert isinstance(channel, Channel)
    assert (channel.tenant, channel.channel, channel.subset, channel.version) == (
        "acme",
        "web",
        "stable",
        "1.0.0",
    )
    billing = agent(
        "urn:acme:billing",
        ("urn:telekom:capability:billing:view-bill", "View Bills", "1.0"),
        ("urn:telekom:capability:billing:change-address", "Change Address", "1.1.0"),
    )
    old = agent("urn:acme:old", ("urn:telekom:capability:billing:change-address", "Change Address", "1.0.0"))
    routing = resolve_channel(channel, [old, billing])
    assert routing.resolved
    assert routing.agent_ids == ["urn:acme:billing"]
    wires = routing.spec.capability_groups[0].capabilities
    assert [(w.id, w.required_version, w.provided_version) for w in wires] == [
        ("urn:telekom:capability:billing:view-bill", "1.0.0", "1.0"),
        ("urn:telekom:capability:billing:change-address", ">=1.0.0", "1.1.0"),
    ]
    assert wires[0].host == "http://billing.example:8080/"
    document = routing.to_dict()
    assert document["kind"] == "ChannelRouting"
    assert document["status"] == {"resolveStatus": "RESOLVED"}
    assert document["spec"]["capabilityGroups"][0]["capabilities"][1]["providedVersion"] == "1.1.0"


def test_strategies_and_unresolved_capabilities() -> None:
    channel = Channel.model_validate(
        {
            "metadata": {"name": "c", "labels": {"tenant": "t", "channel": "web"}},
            "spec": {
                "requiredCapabilities": [
                    {"name": "Forecast", "version": "^1.0", "strategy": "MOST_SIMILAR"},
                    {"id": "urn:cap:news", "version": "[2.0,3.0)"},
                ]
            },
        }
    )
    v10 = agent("urn:a:v10", ("urn:cap:forecast", "Forecast", "1.0"))
    v14 = agent("urn:a:v14", ("urn:cap:forecast", "Forecast", "1.4.0"), ("urn:cap:news", "News", "3.0.0"))
    v20 = agent("urn:a:v20", ("urn:cap:forecast", "Forecast", "2.0.0"))
    routing = resolve_channel(channel, [v20, v14, v10])
    assert not routing.resolved
    assert routing.agent_ids == ["urn:a:v10"]  # MOST_SIMILAR: the lowest version in range
    assert [c.key for c in routing.unresolved] == ["urn:cap:news"]  # 3.0.0 is outside [2.0,3.0)
    assert routing.to_dict()["status"]["unresolvedRequiredCapabilities"][0]["version"] == "[2.0,3.0)"
    channel.spec.required_capabilities[0].strategy = "HIGHEST"
    assert resolve_channel(channel, [v20, v14, v10]).agent_ids == ["urn:a:v14"]
    news = agent("urn:a:news", ("urn:cap:news", "News", "2.5"))
    assert resolve_channel(channel, [v10, v14, news]).resolved


def test_bad_resources_are_refused_with_their_name() -> None:
    documents: list[Any] = [
        {"kind": "Service", "metadata": {"name": "ignored"}},
        {
            "kind": "Channel",
            "metadata": {"name": "broken"},
            "spec": {"requiredCapabilities": [{"version": "1"}]},
        },
    ]
    with pytest.raises(ValueError, match=r"Channel 'broken'.*id or a name"):
        load_channel_resources(documents)
    with pytest.raises(ValueError, match="not a version"):
        Channel.model_validate(
            {"metadata": {"name": "x"}, "spec": {"requiredCapabilities": [{"id": "a", "version": ">=one"}]}}
        )


def rollout(stable: int, canary: int) -> ChannelRollout:
    return ChannelRollout.model_validate(
        {
            "apiVersion": "lmos.eclipse/v1",
            "kind": "ChannelRollout",
            "metadata": {"name": "acme-web-rollout", "labels": {"tenant": "acme", "channel": "web"}},
            "spec": {
                "strategy": {
                    "canary": {
                        "stableChannel": {"name": "acme-web-stable", "weight": stable},
                        "canaryChannel": {"name": "acme-web-canary", "weight": canary},
                    }
                }
            },
        }
    )


def test_canary_split_is_weighted_and_sticky() -> None:
    split = rollout(90, 10)
    choices = [split.choose(f"conversation-{n}") for n in range(10_000)]
    share = choices.count("acme-web-canary") / len(choices)
    assert 0.08 <= share <= 0.12
    assert all(split.choose(f"conversation-{n}") == choices[n] for n in range(0, 10_000, 97))
    assert {rollout(100, 0).choose(f"c{n}") for n in range(200)} == {"acme-web-stable"}
    assert {rollout(0, 1).choose(f"c{n}") for n in range(200)} == {"acme-web-canary"}
    with pytest.raises(ValueError, match="positive total weight"):
        rollout(0, 0)
