"""The OpenAPI 3.1 document of the runtime's HTTP API, built from the very models that parse it."""

from __future__ import annotations

from functools import cache
from typing import Any

from ._lmos import AssistantMessage, Conversation

__all__ = ["openapi_document"]

_ERROR = {
    "type": "object",
    "required": ["errorCode", "message"],
    "properties": {
        "errorCode": {
            "type": "string",
            "enum": [
                "INVALID_REQUEST",
                "AGENT_NOT_FOUND",
                "AGENT_CLIENT_EXCEPTION",
                "INTERNAL_SERVER_ERROR",
                "CONVERSATION_NOT_FOUND",
                "SERVICE_UNAVAILABLE",
            ],
        },
        "message": {"type": "string"},
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_TENANT = {"name": "tenantId", "in": "path", "required": True, "schema": {"type": "string"}}
_CONVERSATION = {"name": "conversationId", "in": "path", "required": True, "schema": {"type": "string"}}
_CHANNEL = {"name": "channelId", "in": "path", "required": True, "schema": {"type": "string"}}
_SUBSET = {
    "name": "x-subset",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "The subset (default: a ChannelRollout's pick for the conversation, else stable).",
}


@cache
def openapi_document() -> dict[str, Any]:
    """Every endpoint, under ``/apis/v1`` (``/lmos/runtime/apis/v1`` serves the same)."""
    request = Conversation.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    reply = AssistantMessage.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = {"Error": _ERROR}
    for document in (request, reply):
        schemas.update(document.pop("$defs", {}))
    reply["properties"]["agent"] = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "name": {"type": "string"}},
        "description": "The agent that answered (beside LMOS's members).",
    }
    reply["properties"]["routing"] = {
        "type": "object",
        "description": "How the agent was chosen: method (explicit, vector, llm, hybrid:..., cascade:..., "
        "sticky), score, reason, capabilityId, subset, ranking (the runner-ups: agentId, score, best first).",
    }
    schemas["Conversation"] = request
    schemas["AssistantMessage"] = reply
    chat = {
        "post": {
            "summary": "Send a user turn; the agent that fits answers (LMOS ConversationController)",
            "parameters": [
                _TENANT,
                _CONVERSATION,
                {"name": "x-turn-id", "in": "header", "required": True, "schema": {"type": "string"}},
                _SUBSET,
                {"name": "traceparent", "in": "header", "required": False, "schema": {"type": "string"}},
                {"name": "tracestate", "in": "header", "required": False, "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Conversation"}}},
            },
            "responses": {
                "200": {
                    "description": "The reply; Server-Sent Events (delta..., reply) for text/event-stream",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/AssistantMessage"}},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                "400": _error("INVALID_REQUEST: no x-turn-id, a malformed body, too many messages"),
                "404": _error("AGENT_NOT_FOUND: no agent serves the tenant/channel/subset, or fits the turn"),
                "413": _error("INVALID_REQUEST: the body is larger than max_body"),
                "502": _error("AGENT_CLIENT_EXCEPTION: the agent failed"),
                "503": _error("SERVICE_UNAVAILABLE: too many open streams"),
                "504": _error("AGENT_CLIENT_EXCEPTION: the agent did not answer in time"),
            },
        }
    }
    paths: dict[str, Any] = {
        "/apis/v1/{tenantId}/chat/{conversationId}/message": chat,
        "/apis/v1/{tenantId}/chat/{conversationId}": {
            "get": {
                "summary": "The stored turns of a conversation, with the agent of each",
                "parameters": [_TENANT, _CONVERSATION],
                "responses": {"200": _json({"type": "object"}), "404": _error("CONVERSATION_NOT_FOUND")},
            }
        },
        "/apis/v1/{tenantId}/chat/{conversationId}/ws": {
            "get": {
                "summary": "WebSocket: one JSON frame per turn (the LMOS body plus turnId, subset?); frames "
                "back are {type: delta|reply|error, turnId, ...}",
                "parameters": [_TENANT, _CONVERSATION],
                "responses": {"101": {"description": "Switching Protocols"}},
            }
        },
        "/apis/v1/agents": {
            "get": {
                "summary": "The candidate agents of a tenant's channel (LMOS AgentsController)",
                "parameters": [
                    {"name": n, "in": "query", "required": r, "schema": {"type": "string"}}
                    for n, r in (("tenantId", True), ("channelId", True), ("subset", False))
                ],
                "responses": {"200": _json({"type": "object"}), "400": _error("INVALID_REQUEST")},
            }
        },
        "/apis/v1/tenants/{tenantId}/channels": {
            "get": {
                "summary": "The tenant's Channels",
                "parameters": [_TENANT, _SUBSET],
                "responses": {"200": _json({"type": "array"})},
            }
        },
        "/apis/v1/tenants/{tenantId}/channels/{channelId}": {
            "get": {
                "summary": "One Channel with its resolve status",
                "parameters": [_TENANT, _CHANNEL, _SUBSET],
                "responses": {"200": _json({"type": "object"}), "404": {"description": "no such channel"}},
            }
        },
        "/apis/v1/tenants/{tenantId}/channels/{channelId}/routing": {
            "get": {
                "summary": "The channel's ChannelRouting (RESOLVED / UNRESOLVED, the last resolved one kept)",
                "parameters": [_TENANT, _CHANNEL, _SUBSET],
                "responses": {"200": _json({"type": "object"}), "404": {"description": "no such channel"}},
            }
        },
        "/metrics": {
            "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text 0.0.4"}}}
        },
        "/health/liveness": {"get": {"summary": "Liveness", "responses": {"200": _json({"type": "object"})}}},
        "/health/readiness": {
            "get": {
                "summary": "Readiness: the candidates are known and no shutdown is under way",
                "responses": {
                    "200": _json({"type": "object"}),
                    "503": _json({"type": "object"}, "not ready"),
                },
            }
        },
        "/chat": {"get": {"summary": "The chat page (HTML)", "responses": {"200": {"description": "HTML"}}}},
        "/chat/config.json": {
            "get": {
                "summary": "What the chat page offers: tenants and their channels, subsets, the explorer",
                "responses": {"200": _json({"type": "object"})},
            }
        },
        "/chat/conversations": {
            "get": {
                "summary": "A tenant's stored conversations, most recently active first",
                "parameters": [
                    {"name": "tenantId", "in": "query", "required": True, "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}},
                ],
                "responses": {"200": _json({"type": "object"}), "400": _error("INVALID_REQUEST")},
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _json({"type": "object"})}}
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "wot-agents runtime (LMOS-compatible)", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
