"""Settings of the directory: constructor arguments, or ``WOT_AGENTS_DIRECTORY_*`` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DirectorySettings"]


class DirectorySettings(BaseSettings):
    """Everything configurable; every limit has a safe default."""

    model_config = SettingsConfigDict(env_prefix="WOT_AGENTS_DIRECTORY_", env_nested_delimiter="__")

    host: str = "127.0.0.1"
    port: int = 8081
    #: The database file (SQLite; the SPARQL index lives in ``<db>.rdf/``); None keeps all in memory.
    db: Path | None = None
    #: When set, writes need ``Authorization: Bearer <token>``; reads stay open.
    token: str | None = None
    #: Reads need the token too (WoT Discovery 9.1: access to private directories should be
    #: limited); only the directory's own TD stays open, so clients learn how to authenticate.
    protect_reads: bool = False
    #: Longest accepted ``registration.ttl`` (s); None for no limit.
    max_ttl: float | None = 30 * 24 * 3600
    #: How often expired registrations are purged (s).
    purge_interval: float = 10.0
    #: Seconds a client has to send a request's headers (from connecting, or from the previous
    #: answer on a kept-alive connection) and then its body: idle and half-sent connections end.
    read_timeout: float = Field(default=15.0, gt=0)
    #: Open connections at most (event streams included); one more is closed at once. Each is a
    #: file descriptor: ~1,100 idle sockets exhausted them before this limit.
    max_connections: int = Field(default=512, ge=1)
    #: Largest request body (bytes): larger ones get 413.
    max_body: int = 4 * 1024 * 1024
    max_id_length: int = 1024
    #: Time limit of one SPARQL or JSONPath query (s), and most results it may return.
    query_timeout: float = 5.0
    result_cap: int = 10_000
    #: Largest page of the listing and of the filter search.
    max_page: int = 10_000
    #: SPARQL endpoints a query may call with SERVICE (SPARQL 1.1 Federated Query); none: off.
    #: Only these exact IRIs: the directory is not a proxy to wherever a client points it.
    sparql_services: list[str] = Field(default_factory=list)
    #: Events a slow SSE consumer may fall behind before it is disconnected (it can resume).
    event_queue: int = 1000
    #: Seconds a blocked write to an SSE consumer may take before its stream is ended.
    event_write_timeout: float = 10.0
    #: Seconds of silence on an SSE stream before a keep-alive comment. Long: some clients (the Go
    #: r3labs/sse) turn every comment into an empty event; proxies rarely cut under a minute.
    event_keepalive: float = Field(default=50.0, gt=0)
    #: Events kept for Last-Event-ID replay.
    journal_size: int = Field(default=100_000, ge=1)
    #: Refuse unsigned descriptions (a signed one is always verified, whatever this says).
    require_signatures: bool = False
    #: DIDs whose signatures are accepted (env: a JSON list); None accepts any signer whose key resolves.
    trusted_issuers: list[str] | None = None
    #: Hosts whose did:web documents are fetched over plain HTTP: labs and tests on loopback only.
    did_web_http_hosts: list[str] = Field(default_factory=list)
    #: A CA file trusted for did:web documents over HTTPS besides the system's (a lab CA).
    did_web_ca: Path | None = None

    @model_validator(mode="after")
    def _reads_need_a_token(self) -> Self:
        if self.protect_reads and self.token is None:
            raise ValueError("protect_reads needs a token")
        return self
