"""One way to build a router from plain options (the CLI and configuration files use it)."""

from __future__ import annotations

from typing import Any

from ._cascade import CascadeRouter
from ._decision import AgentFilter
from ._embedders import Embedder, EmbeddingCache
from ._hybrid import HybridRouter
from ._llm import LLMClient, LLMRouter
from ._vector import VectorRouter

__all__ = ["METHODS", "create_router"]

METHODS = ("vector", "llm", "hybrid")


def create_router(
    method: str = "vector",
    *,
    embedder: Embedder | str = "minilm",
    rule: str = "classifier",
    threshold: float | None = None,
    cache: EmbeddingCache | None = None,
    where: AgentFilter | None = None,
    hybrid_mode: str = "fast",
    llm: dict[str, Any] | None = None,
    cascade: Embedder | str | None = None,
) -> VectorRouter | LLMRouter | HybridRouter | CascadeRouter:
    """A router for ``method``; ``llm`` holds :class:`LLMClient` options (model, base_url, ...).

    ``cascade`` (vector only): the embedder of an accurate vector router that settles what the
    ``embedder`` one is unsure of (:class:`CascadeRouter`).
    """
    if method not in METHODS:
        raise ValueError(f"unknown routing method {method!r}; choose one of {', '.join(METHODS)}")
    if cascade is not None and method != "vector":
        raise ValueError("a cascade is of two vector routers; use it with the vector method")
    if method == "llm":
        return LLMRouter(LLMClient(**(llm or {})), where=where)
    vector = VectorRouter(embedder, rule=rule, threshold=threshold, cache=cache, where=where)
    if cascade is not None:
        accurate = VectorRouter(cascade, rule=rule, threshold=threshold, cache=cache, where=where)
        return CascadeRouter(vector, accurate)
    if method == "vector":
        return vector
    return HybridRouter(vector, LLMClient(**(llm or {})), mode=hybrid_mode)
