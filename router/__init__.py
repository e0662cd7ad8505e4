"""Choose the agent for a query: vector, LLM and hybrid routing over Agent Descriptions.

All three methods, and the cascade of a fast and an accurate vector router, share one API,
``await router.route(query, history, candidates) -> Decision``, and know nothing of where the
descriptions came from (a directory, discovery, a file).
"""

from ._cascade import CascadeRouter
from ._decision import AgentFilter, Decision, Message, Router, agent_key
from ._embedders import (
    EMBEDDERS,
    CachedEmbedder,
    ConcatEmbedder,
    E5Embedder,
    Embedder,
    EmbeddingCache,
    MiniLMEmbedder,
    OpenAIEmbedder,
    TorchMiniLMEmbedder,
    WordLlamaEmbedder,
    get_embedder,
    with_cache,
)
from ._eval import EvalReport, LabelledQuery, evaluate, load_agents, load_queries
from ._factory import METHODS, create_router
from ._hybrid import MODES, HybridRouter
from ._index import CapabilityIndex, IndexedAgent, IndexedCapability
from ._llm import LLMClient, LLMRouter, render_agents
from ._tuning import TunedMiniLMEmbedder, TuningSettings, tune_minilm
from ._vector import (
    DEFAULT_SIMILARITY,
    DEFAULT_THRESHOLDS,
    OUT_OF_SCOPE,
    RULES,
    VectorRouter,
    calibrate_threshold,
)

__all__ = [
    "DEFAULT_SIMILARITY",
    "DEFAULT_THRESHOLDS",
    "EMBEDDERS",
    "METHODS",
    "MODES",
    "OUT_OF_SCOPE",
    "RULES",
    "AgentFilter",
    "CachedEmbedder",
    "CapabilityIndex",
    "CascadeRouter",
    "ConcatEmbedder",
    "Decision",
    "E5Embedder",
    "Embedder",
    "EmbeddingCache",
    "EvalReport",
    "HybridRouter",
    "IndexedAgent",
    "IndexedCapability",
    "LLMClient",
    "LLMRouter",
    "LabelledQuery",
    "Message",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "Router",
    "TorchMiniLMEmbedder",
    "TunedMiniLMEmbedder",
    "TuningSettings",
    "VectorRouter",
    "WordLlamaEmbedder",
    "agent_key",
    "calibrate_threshold",
    "create_router",
    "evaluate",
    "get_embedder",
    "load_agents",
    "load_queries",
    "render_agents",
    "tune_minilm",
    "with_cache",
]
