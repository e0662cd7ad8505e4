"""Choose the agent for a query: vector, LLM and hybrid routing over Agent Descriptions.

All three methods, and the cascade of a fast and an accurate vector router, implement one protocol,
:class:`Router` (``add``, ``remove``, ``await router.route(query, history, candidates, where=...)
-> Decision``, ``refitted``, ``aclose``, ``async with``) through :class:`RouterBase`, take the
conversation as the SDK's :class:`~wot_agents.ChatMessage` list, and know nothing of where the
descriptions came from (a directory, discovery, a file).
"""

from ._base import CompositeRouter, RouterBase
from ._cascade import CascadeRouter
from ._decision import AgentFilter, Decision, Router, agent_key
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
    DESCRIBED_ONLY_FLOOR,
    FENCE,
    OUT_OF_SCOPE,
    RULES,
    VectorRouter,
    calibrate_threshold,
)

__all__ = [
    "DEFAULT_SIMILARITY",
    "DEFAULT_THRESHOLDS",
    "DESCRIBED_ONLY_FLOOR",
    "EMBEDDERS",
    "FENCE",
    "METHODS",
    "MODES",
    "OUT_OF_SCOPE",
    "RULES",
    "AgentFilter",
    "CachedEmbedder",
    "CapabilityIndex",
    "CascadeRouter",
    "CompositeRouter",
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
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "Router",
    "RouterBase",
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
