"""Settings of the runtime: constructor arguments, ``WOT_AGENTS_RUNTIME_*`` variables, or LMOS's names.

An LMOS deployment's configuration carries over: ``AGENT_REGISTRY_URL`` names the directory,
``OPENAI_API_URL`` / ``LLM_BASE_URL``, ``OPENAI_API_MODEL`` / ``LLM_MODEL_NAME`` and
``OPENAI_API_KEY`` / ``LLM_API_KEY`` the LLM, ``ROUTER_TYPE`` the routing method. The
``WOT_AGENTS_RUNTIME_*`` name wins when both are set (it is listed first).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ROUTING_METHODS", "RuntimeSettings"]

PREFIX = "WOT_AGENTS_RUNTIME_"

#: ``explicit`` routes only turns naming ``explicitAgent`` (LMOS's ROUTER_TYPE=EXPLICIT).
ROUTING_METHODS = ("vector", "llm", "hybrid", "cascade", "explicit")
RoutingMethod = Literal["vector", "llm", "hybrid", "cascade", "explicit"]


def _env(name: str, *lmos: str, default: Any = None) -> Any:
    """Accept the field name, its ``WOT_AGENTS_RUNTIME_`` variable, then LMOS's variables."""
    return Field(default=default, validation_alias=AliasChoices(name, PREFIX + name.upper(), *lmos))


class RuntimeSettings(BaseSettings):
    """Everything configurable; every limit has a safe default."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_nested_delimiter="__", populate_by_name=True, extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: The Thing Description Directory the candidates come from (kept current by its events).
    directory: str | None = _env("directory", "AGENT_REGISTRY_URL")
    directory_token: str | None = None
    #: Agent Description files (a TD or a JSON array of TDs each) served as fixed candidates.
    agents: list[str] = Field(default_factory=list)
    #: Browse mDNS / DNS-SD for agents when neither a directory nor agent files are given.
    mdns: bool = True
    #: LMOS Channel / ChannelRollout YAML files, reloaded when they change on disk.
    channels: list[str] = Field(default_factory=list)
    #: Seconds between looks at the channel files' modification times.
    channels_poll_interval: float = Field(default=2.0, gt=0)
    #: How turns without ``explicitAgent`` are routed.
    router: RoutingMethod = _env("router", "ROUTER_TYPE", default="vector")
    #: Another method for some channels: ``{"acme/web": "llm", "acme/*": "vector", "*/ivr": "explicit"}``
    #: (the most specific key wins; every method used is loaded at start).
    routes: dict[str, RoutingMethod] = Field(default_factory=dict)
    #: The vector router's embedder. MiniLM quantised to int8 by default: half the CPU a query of
    #: the fp32 model and ~80 MB less memory, for routing accuracy within ~0.3 points of it on the
    #: benchmark datasets (docs/architecture.md, runtime performance); ``minilm`` is the fp32 model.
    embedder: str = "minilm-int8"
    #: Join the embeddings of concurrent turns into batches (runtime/_batch.py).
    batch_embeddings: bool = True
    #: The accurate embedder of ``router=cascade``.
    cascade_embedder: str = "minilm+e5"
    llm_base_url: str | None = _env("llm_base_url", "OPENAI_API_URL", "LLM_BASE_URL")
    llm_model: str | None = _env("llm_model", "OPENAI_API_MODEL", "LLM_MODEL_NAME")
    llm_api_key: str | None = _env("llm_api_key", "OPENAI_API_KEY", "LLM_API_KEY")
    #: When no agent fits a turn and an LLM is configured, answer with a clarifying question
    #: (LMOS's disambiguation) instead of AGENT_NOT_FOUND.
    clarify: bool = True
    #: ``json_schema`` (OpenAI), ``json_object`` or ``json_object+schema`` (llama.cpp).
    llm_response_format: str = _env("llm_response_format", "LLM_FORMAT", default="json_schema")
    #: The subset of turns without ``x-subset`` (LMOS: ``stable``).
    default_subset: str = "stable"
    #: Seconds an agent may take to answer one turn.
    agent_timeout: float = Field(default=30.0, gt=0)
    #: The conversation store's SQLite file, or a ``postgresql://`` DSN that several runtime
    #: replicas share; None keeps conversations in memory (lost on exit).
    store: str | None = None
    #: Its bounds: turns kept per conversation, conversations per tenant, seconds of inactivity.
    store_max_turns: int = Field(default=100, gt=0)
    store_max_conversations: int = Field(default=100_000, gt=0)
    store_max_age: float = Field(default=30 * 24 * 3600.0, gt=0)
    store_purge_interval: float = Field(default=300.0, gt=0)
    #: Earlier turns (from the store) the router reads when the client sent only the new message.
    history_turns: int = Field(default=6, ge=0)
    #: Keep a conversation with its agent unless the router prefers another by ``switch_margin``.
    sticky: bool = True
    switch_margin: float = Field(default=0.1, ge=0)
    #: Seconds per agent id, where one agent needs another time limit than ``agent_timeout``.
    agent_timeouts: dict[str, float] = Field(default_factory=dict)
    #: Failures in a row that take an agent out of routing, and for how many seconds.
    breaker_threshold: int = Field(default=3, gt=0)
    breaker_cooldown: float = Field(default=30.0, ge=0)
    #: Trust (wot_agents.trust). The runtime's own key file (made on first run): its DID.
    identity: str | None = None
    #: A group the runtime is a member of: its credential (from ``directory``) goes with every turn.
    group: str | None = None
    #: Forward only to agents whose TD is signed, by one of ``trusted_issuers`` when given.
    require_signatures: bool = False
    trusted_issuers: list[str] | None = None
    #: Mutual TLS to agents: a certificate naming the runtime's DID, its key, the CA (``wot-agents ca``).
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    #: Largest request body (bytes) and most messages in one turn.
    max_body: int = Field(default=1024 * 1024, gt=0)
    max_messages: int = Field(default=200, gt=0)
    #: Most SSE and WebSocket streams open at once (503 past it).
    max_streams: int = Field(default=256, gt=0)

    @field_validator("router", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("agents", "channels", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return [part for part in value.split(",") if part] if isinstance(value, str) else value
