"""The wot-agents runtime: an LMOS-compatible chat endpoint that routes each turn to the right agent.

A client sends a user turn to ``POST /apis/v1/{tenantId}/chat/{conversationId}/message``; the
runtime finds the chat agents serving the tenant, channel and subset (from a directory, kept
current by its events, or from mDNS), routes the turn (explicit agent, vector, LLM, hybrid or
cascade) and forwards it over the chosen agent's binding (HTTP, WebSocket, MQTT).
"""

from ._app import PREFIXES, RUNTIME, create_app
from ._catalog import AgentCatalog, CatalogSource, directory_source, file_source, mdns_source
from ._channels import ChannelFiles, ChannelTable, load_channel_files
from ._config import ROUTING_METHODS, RuntimeSettings
from ._forward import Breaker, Forwarder
from ._lmos import (
    AGENT_CLIENT_EXCEPTION,
    AGENT_NOT_FOUND,
    CONVERSATION_NOT_FOUND,
    INTERNAL_SERVER_ERROR,
    INVALID_REQUEST,
    AnonymizationEntity,
    AssistantMessage,
    BinaryData,
    Conversation,
    InputContext,
    KeyValuePair,
    LmosError,
    Message,
    SystemContext,
    UserContext,
)
from ._postgres import PostgresConversationStore
from ._runtime import Runtime, Turn, TurnRequest
from ._store import ConversationStore, ConversationSummary, SQLiteConversationStore, StoredTurn

__all__ = [
    "AGENT_CLIENT_EXCEPTION",
    "AGENT_NOT_FOUND",
    "CONVERSATION_NOT_FOUND",
    "INTERNAL_SERVER_ERROR",
    "INVALID_REQUEST",
    "PREFIXES",
    "ROUTING_METHODS",
    "RUNTIME",
    "AgentCatalog",
    "AnonymizationEntity",
    "AssistantMessage",
    "BinaryData",
    "Breaker",
    "CatalogSource",
    "ChannelFiles",
    "ChannelTable",
    "Conversation",
    "ConversationStore",
    "ConversationSummary",
    "Forwarder",
    "InputContext",
    "KeyValuePair",
    "LmosError",
    "Message",
    "PostgresConversationStore",
    "Runtime",
    "RuntimeSettings",
    "SQLiteConversationStore",
    "StoredTurn",
    "SystemContext",
    "Turn",
    "TurnRequest",
    "UserContext",
    "create_app",
    "directory_source",
    "file_source",
    "load_channel_files",
    "mdns_source",
]
