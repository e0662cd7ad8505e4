"""LMOS channels: which agents serve a tenant's channel, resolved from required capabilities.

A ``Channel`` (``apiVersion: lmos.eclipse/v1``, labels ``tenant``/``channel``/``subset``/``version``)
lists the capabilities the channel needs, each with a version range and a strategy. Resolving it
against Agent Descriptions (their ``lmos:capabilities``) gives a ``ChannelRouting``: one capability
group per agent wired in, with the required and the provided version of each capability, and a
status, ``RESOLVED`` or ``UNRESOLVED`` with the capabilities no agent provides. This is the
OSGi-style requirement/capability resolution of the LMOS operator, as a pure function, so the
runtime (channels from YAML files) and a Kubernetes reconciler (channels as custom resources) share
it::

    channel = Channel.model_validate(yaml.safe_load(text))
    routing = resolve_channel(channel, agents)
    if routing.resolved: ...
    routing.agent_ids                 # the channel's candidate set

Version ranges are written npm style (``>=1.0.0``, ``^1.2``, ``~1.2``, ``1.x``, ``1.0.0 - 2.0.0``,
``<1 || >=2``) or Ivy style (``[1.0,2.0)``, ``]1.0,2.0[``, ``[1.0,)``, ``1.0.+``), as the LMOS
operator's semver4j accepts them. Versions are coerced the way it does in loose mode: ``1`` is
``1.0.0``, ``1.2`` is ``1.2.0``, a leading ``v`` is dropped.

A ``ChannelRollout`` splits a channel's conversations between a stable and a canary channel by
weight; :meth:`ChannelRollout.choose` maps a conversation to one of them, the same one every time.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import total_ordering
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

from ._model import AgentDescription

__all__ = [
    "API_VERSION",
    "CapabilityGroup",
    "CapabilityWire",
    "Channel",
    "ChannelRollout",
    "ChannelRouting",
    "ObjectMeta",
    "RequiredCapability",
    "Version",
    "VersionRange",
    "load_channel_resources",
    "resolve_channel",
]

API_VERSION = "lmos.eclipse/v1"

ResolveStrategy = Literal["HIGHEST", "MOST_SIMILAR"]
ResolveStatus = Literal["RESOLVED", "UNRESOLVED"]


# --- versions and ranges ---------------------------------------------------------------------------

_VERSION = re.compile(
    r"^\s*[vV=]?\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.\d+)*(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?\s*$"
)


@total_ordering
@dataclass(frozen=True, slots=True)
class Version:
    """A semantic version, coerced loosely (``1.2`` is ``1.2.0``); pre-releases sort before releases."""

    major: int
    minor: int = 0
    patch: int = 0
    prerelease: tuple[int | str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _VERSION.match(str(text))
        if match is None:
            raise ValueError(f"{text!r} is not a version (expected e.g. 1, 1.2 or 1.2.3)")
        major, minor, patch, pre = match.groups()
        prerelease = tuple(int(part) if part.isdigit() else part for part in pre.split(".")) if pre else ()
        return cls(int(major), int(minor or 0), int(patch or 0), prerelease)

    def _key(self) -> tuple[Any, ...]:
        # A release sorts after its pre-releases; numeric identifiers before alphanumeric ones.
        pre = tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in self.prerelease)
        return (self.major, self.minor, self.patch, 1 if not pre else 0, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return core + ("-" + ".".join(str(part) for part in self.prerelease) if self.prerelease else "")


#: One comparator: (operator, version), operator one of <, <=, >, >=, =.
_Comparator = tuple[str, Version]
_WILD = ("x", "X", "*", "+")
_PARTIAL = re.compile(r"^[vV=]?(\d+|[xX*+])(?:\.(\d+|[xX*+]))?(?:\.(\d+|[xX*+]))?(?:-([0-9A-Za-z.-]+))?$")
_IVY = re.compile(r"^([\[\]()])\s*([^,\[\]()]*)\s*,\s*([^,\[\]()]*)\s*([\[\]()])$")


def _partial(text: str) -> tuple[list[int | None], str | None]:
    match = _PARTIAL.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a version or version pattern")
    major, minor, patch, pre = match.groups()
    parts: list[int | None] = []
    for part in (major, minor, patch):
        if part is None or part in _WILD:
            break
        parts.append(int(part))
    return parts, pre


def _version(parts: Sequence[int | None], pre: str | None = None) -> Version:
    numbers = [int(part or 0) for part in parts] + [0] * (3 - len(parts))
    prerelease = tuple(int(p) if p.isdigit() else p for p in pre.split(".")) if pre else ()
    return Version(numbers[0], numbers[1], numbers[2], prerelease)


def _x_range(parts: Sequence[int | None]) -> list[_Comparator]:
    """``1`` / ``1.x`` -> >=1.0.0 <2.0.0; ``1.2`` -> >=1.2.0 <1.3.0; ``*`` -> anything."""
    if not parts:
        return []
    low = _version(parts)
    if len(parts) == 1:
        return [(">=", low), ("<", Version(low.major + 1))]
    return [(">=", low), ("<", Version(low.major, low.minor + 1))]


def _caret(parts: Sequence[int | None], pre: str | None) -> list[_Comparator]:
    """``^1.2.3`` -> <2.0.0; ``^0.2.3`` -> <0.3.0; ``^0.0.3`` -> <0.0.4 (the left-most non-zero part)."""
    if not parts:
        return []
    low = _version(parts, pre)
    if low.major or len(parts) == 1:
        high = Version(low.major + 1)
    elif low.minor or len(parts) == 2:
        high = Version(0, low.minor + 1)
    else:
        high = Version(0, 0, low.patch + 1)
    return [(">=", low), ("<", high)]


def _tilde(parts: Sequence[int | None], pre: str | None) -> list[_Comparator]:
    """``~1.2.3`` -> >=1.2.3 <1.3.0; ``~1`` -> >=1.0.0 <2.0.0."""
    if not parts:
        return []
    low = _version(parts, pre)
    high = Version(low.major + 1) if len(parts) == 1 else Version(low.major, low.minor + 1)
    return [(">=", low), ("<", high)]


def _comparator(operator: str, text: str) -> list[_Comparator]:
    parts, pre = _partial(text)
    if operator in ("", "="):
        return [("=", _version(parts, pre))] if len(parts) == 3 else _x_range(parts)
    if not parts:  # >=*, <x ...
        return [] if operator in (">=", "<=") else [("<", Version(0, 0, 0, (0,)))]
    if len(parts) == 3:
        return [(operator, _version(parts, pre))]
    # A partial version with an operator: >1.2 means >=1.3.0, <=1.2 means <1.3.0 (npm).
    bounds = _x_range(parts)
    if operator == ">":
        return [(">=", bounds[1][1])]
    if operator == "<=":
        return [("<", bounds[1][1])]
    return [(operator, bounds[0][1])]


_TOKEN = re.compile(r"\s*(\^|~>?|>=|<=|>|<|=)?\s*([^\s^~<>=][^\s]*)")


def _npm_set(text: str) -> list[_Comparator]:
    hyphen = re.match(r"^\s*(\S+)\s+-\s+(\S+)\s*$", text)
    if hyphen:
        low_parts, low_pre = _partial(hyphen.group(1))
        high_parts, high_pre = _partial(hyphen.group(2))
        low: list[_Comparator] = [(">=", _version(low_parts, low_pre))] if low_parts else []
        if len(high_parts) == 3:
            return [*low, ("<=", _version(high_parts, high_pre))]
        return [*low, *(_x_range(high_parts)[1:] if high_parts else [])]
    comparators: list[_Comparator] = []
    for match in _TOKEN.finditer(text):
        operator, operand = match.group(1) or "", match.group(2)
        parts, pre = _partial(operand)
        if operator == "^":
            comparators += _caret(parts, pre)
        elif operator.startswith("~"):
            comparators += _tilde(parts, pre)
        else:
            comparators += _comparator(operator, operand)
    return comparators


def _ivy_set(match: re.Match[str]) -> list[_Comparator]:
    opening, low, high, closing = match.groups()
    comparators: list[_Comparator] = []
    if low:
        comparators.append((">=" if opening == "[" else ">", Version.parse(low)))
    if high:
        comparators.append(("<=" if closing == "]" else "<", Version.parse(high)))
    return comparators


def _compare(version: Version, operator: str, bound: Version) -> bool:
    if operator == "=":
        return version == bound
    if operator == ">=":
        return version >= bound
    if operator == ">":
        return version > bound
    if operator == "<=":
        return version <= bound
    return version < bound


@dataclass(frozen=True, slots=True)
class VersionRange:
    """A set of versions: any of ``alternatives``, each a conjunction of comparators."""

    text: str
    alternatives: tuple[tuple[_Comparator, ...], ...]

    @classmethod
    def parse(cls, text: str | None) -> VersionRange:
        """Parse an npm or Ivy range; ``None``, ``""`` and ``*`` accept every version."""
        source = (text or "").strip()
        if not source or source in ("*", "latest", "latest.integration"):
            return cls(source, ((),))
        alternatives: list[tuple[_Comparator, ...]] = []
        for alternative in source.split("||"):
            part = alternative.strip()
            ivy = _IVY.match(part)
            if ivy:
                alternatives.append(tuple(_ivy_set(ivy)))
            elif part.endswith(".+") or part == "+":  # Ivy's "latest with this prefix"
                alternatives.append(tuple(_x_range(_partial(part[:-2] if part != "+" else "*")[0])))
            else:
                alternatives.append(tuple(_npm_set(part)))
        return cls(source, tuple(alternatives))

    def __contains__(self, version: object) -> bool:
        if isinstance(version, str):
            version = Version.parse(version)
        if not isinstance(version, Version):
            return False
        return any(
            all(_compare(version, operator, bound) for operator, bound in alternative)
            for alternative in self.alternatives
        )

    def __str__(self) -> str:
        return self.text or "*"


# --- the resources ---------------------------------------------------------------------------------


class _Resource(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow", serialize_by_alias=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class ObjectMeta(_Resource):
    """Kubernetes object metadata, as LMOS resources carry it."""

    name: str
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] | None = None


class RequiredCapability(_Resource):
    """A capability a channel needs: by ``id`` (or ``name``), a version range and a strategy."""

    id: str | None = None
    name: str | None = None
    version: str = "*"
    strategy: ResolveStrategy = "HIGHEST"

    @model_validator(mode="after")
    def _named(self) -> RequiredCapability:
        if not self.id and not self.name:
            raise ValueError("a required capability needs an id or a name")
        VersionRange.parse(self.version)  # a bad range fails when the channel is loaded, not later
        return self

    @property
    def key(self) -> str:
        return self.id or self.name or ""


class ChannelSpec(_Resource):
    required_capabilities: list[RequiredCapability] = Field(
        default_factory=list, alias="requiredCapabilities"
    )


class ChannelStatus(_Resource):
    resolve_status: ResolveStatus | None = Field(default=None, alias="resolveStatus")
    unresolved_required_capabilities: list[RequiredCapability] | None = Field(
        default=None, alias="unresolvedRequiredCapabilities"
    )


class _Labelled(_Resource):
    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    metadata: ObjectMeta

    @property
    def tenant(self) -> str | None:
        return self.metadata.labels.get("tenant")

    @property
    def channel(self) -> str | None:
        return self.metadata.labels.get("channel")

    @property
    def subset(self) -> str:
        """The subset label; LMOS's default subset is ``stable``."""
        return self.metadata.labels.get("subset") or "stable"


class Channel(_Labelled):
    """An LMOS ``Channel``: a tenant's channel (for one subset) and the capabilities it requires."""

    kind: Literal["Channel"] = "Channel"
    spec: ChannelSpec = Field(default_factory=ChannelSpec)
    status: ChannelStatus | None = None

    @property
    def version(self) -> str | None:
        return self.metadata.labels.get("version")


class CapabilityWire(_Resource):
    """One required capability wired to the capability of an agent that provides it."""

    id: str = ""
    name: str = ""
    required_version: str | None = Field(default=None, alias="requiredVersion")
    provided_version: str = Field(alias="providedVersion")
    description: str = ""
    host: str = ""


class CapabilityGroup(_Resource):
    """An agent wired into a channel, with the capabilities it provides there."""

    id: str = ""
    name: str
    description: str = ""
    capabilities: list[CapabilityWire]


class ChannelRoutingSpec(_Resource):
    capability_groups: list[CapabilityGroup] = Field(default_factory=list, alias="capabilityGroups")


class ChannelRouting(_Labelled):
    """The outcome of resolving a channel: its capability groups and whether everything resolved."""

    kind: Literal["ChannelRouting"] = "ChannelRouting"
    spec: ChannelRoutingSpec = Field(default_factory=ChannelRoutingSpec)
    status: ChannelStatus = Field(default_factory=ChannelStatus)

    @property
    def resolved(self) -> bool:
        return self.status.resolve_status == "RESOLVED"

    @property
    def unresolved(self) -> list[RequiredCapability]:
        return list(self.status.unresolved_required_capabilities or [])

    @property
    def agent_ids(self) -> list[str]:
        """The agents wired in, in the order of the groups: the channel's candidate set."""
        return [group.id for group in self.spec.capability_groups]


class CanaryTarget(_Resource):
    name: str
    weight: int = Field(ge=0)


class CanaryStrategy(_Resource):
    stable_channel: CanaryTarget = Field(alias="stableChannel")
    canary_channel: CanaryTarget = Field(alias="canaryChannel")


class RolloutStrategy(_Resource):
    canary: CanaryStrategy


class ChannelRolloutSpec(_Resource):
    strategy: RolloutStrategy


class ChannelRollout(_Labelled):
    """An LMOS ``ChannelRollout``: a canary split between two channels (by ``metadata.name``)."""

    kind: Literal["ChannelRollout"] = "ChannelRollout"
    spec: ChannelRolloutSpec

    @model_validator(mode="after")
    def _weighted(self) -> ChannelRollout:
        canary = self.spec.strategy.canary
        if canary.stable_channel.weight + canary.canary_channel.weight <= 0:
            raise ValueError("a ChannelRollout needs a positive total weight")
        return self

    def choose(self, key: str) -> str:
        """The channel (its name) that serves the conversation ``key``: by weight, and always the
        same for the same key (a hash, so it holds across restarts and replicas)."""
        canary = self.spec.strategy.canary
        total = canary.stable_channel.weight + canary.canary_channel.weight
        digest = hashlib.sha256(f"{self.metadata.name}\0{key}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") % total
        return (
            canary.canary_channel.name if point < canary.canary_channel.weight else canary.stable_channel.name
        )


def load_channel_resources(documents: Iterable[Mapping[str, Any] | None]) -> list[Channel | ChannelRollout]:
    """The Channels and ChannelRollouts among parsed YAML/JSON documents (other kinds are skipped).

    Raises ``ValueError`` naming the document for one that claims to be either and is malformed.
    """
    resources: list[Channel | ChannelRollout] = []
    for number, document in enumerate(documents, 1):
        if not document:
            continue
        kind = document.get("kind")
        model: type[Channel] | type[ChannelRollout]
        if kind == "Channel":
            model = Channel
        elif kind == "ChannelRollout":
            model = ChannelRollout
        else:
            continue
        try:
            resources.append(model.model_validate(document))
        except PydanticValidationError as exc:
            name = (document.get("metadata") or {}).get("name", "?")
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or '/'}: {error['msg'].removeprefix('Value error, ')}"
                for error in exc.errors()
            )
            raise ValueError(f"document {number} ({kind} {name!r}) is not valid: {problems}") from None
    return resources


# --- resolution ------------------------------------------------------------------------------------


def _host(agent: AgentDescription) -> str:
    """Where the agent lives: its ``base``, else the origin of its first form."""
    if agent.base:
        return agent.base
    for _, _, affordance in agent.affordances():
        for form in affordance.forms:
            parts = urlsplit(urljoin(agent.base or "", form.href))
            if parts.scheme and parts.netloc:
                return f"{parts.scheme}://{parts.netloc}"
    return ""


def resolve_channel(channel: Channel, agents: Iterable[AgentDescription]) -> ChannelRouting:
    """Wire each required capability of ``channel`` to an agent among ``agents`` providing it.

    A capability matches by ``id`` when the requirement names one, else by ``name``; its
    ``version`` (coerced; a capability without one counts as 0.0.0) must lie in the range.
    ``HIGHEST`` takes the highest such version, ``MOST_SIMILAR`` the lowest (the closest to the
    range's floor); equal versions go to the agent with the smaller id, so the result is stable.
    Filter ``agents`` by tenant, channel and subset before calling, as the caller sees fit.
    """
    candidates = list(agents)
    groups: dict[str, CapabilityGroup] = {}
    unresolved: list[RequiredCapability] = []
    for required in channel.spec.required_capabilities:
        accepted = VersionRange.parse(required.version)
        offers: list[tuple[Version, str, AgentDescription, Any]] = []
        for agent in candidates:
            for capability in agent.capabilities or ():
                matches = capability.id == required.id if required.id else capability.name == required.name
                if not matches:
                    continue
                try:
                    provided = Version.parse(capability.version or "0")
                except ValueError:
                    continue
                if provided in accepted:
                    offers.append((provided, agent.id or agent.title, agent, capability))
        if not offers:
            unresolved.append(required)
            continue
        pick = max if required.strategy == "HIGHEST" else min
        chosen = pick(offer[0] for offer in offers)
        version, agent_id, agent, capability = min(
            (offer for offer in offers if offer[0] == chosen), key=lambda offer: offer[1]
        )
        group = groups.get(agent_id)
        if group is None:
            group = groups[agent_id] = CapabilityGroup(
                id=agent_id, name=agent.title, description=agent.description or "", capabilities=[]
            )
        group.capabilities.append(
            CapabilityWire(
                id=capability.id,
                name=capability.name or capability.id,
                required_version=required.version,
                provided_version=capability.version or str(version),
                description=capability.description or "",
                host=_host(agent),
            )
        )
    status = ChannelStatus(
        resolve_status="UNRESOLVED" if unresolved else "RESOLVED",
        unresolved_required_capabilities=unresolved or None,
    )
    return ChannelRouting(
        metadata=ObjectMeta(
            name=channel.metadata.name,
            namespace=channel.metadata.namespace,
            labels=dict(channel.metadata.labels),
        ),
        spec=ChannelRoutingSpec(capability_groups=list(groups.values())),
        status=status,
    )
