"""The runtime's HTTP API: the LMOS chat endpoint and LMOS's info endpoints, on aiohttp.

Every path is served under ``/apis/v1`` and under the older ``/lmos/runtime/apis/v1`` that LMOS's
READMEs show. Errors on these paths are LMOS's ``{"errorCode", "message"}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError as PydanticValidationError

from ._config import RuntimeSettings
from ._lmos import CONVERSATION_NOT_FOUND, INTERNAL_SERVER_ERROR, INVALID_REQUEST, Conversation, LmosError
from ._runtime import Runtime, TurnRequest
from ._stream import stream_sse, stream_ws, wants_events

__all__ = ["PREFIXES", "RUNTIME", "create_app"]

log = logging.getLogger("runtime.http")

#: The API's path prefixes: the current one, and the one LMOS's READMEs still show.
PREFIXES = ("/apis/v1", "/lmos/runtime/apis/v1")
TURN_ID = "x-turn-id"
SUBSET = "x-subset"

RUNTIME = web.AppKey("runtime", Runtime)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def lmos_error(error: LmosError) -> web.Response:
    return web.json_response(error.to_dict(), status=error.status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One place maps failures onto LMOS error bodies."""
    try:
        return await handler(request)
    except LmosError as error:
        return lmos_error(error)
    except web.HTTPRequestEntityTooLarge as exc:
        return lmos_error(LmosError(INVALID_REQUEST, exc.text or "request body too large", status=413))
    except web.HTTPException:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return lmos_error(LmosError(INTERNAL_SERVER_ERROR, "the runtime failed; see its log", status=500))


def _field_errors(exc: PydanticValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg'].removeprefix('Value error, ')}"
        for error in exc.errors()
    )


async def parse_conversation(request: web.Request, max_messages: int) -> Conversation:
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise LmosError(INVALID_REQUEST, f"the body is not JSON: {exc}", status=400) from None
    try:
        conversation = Conversation.model_validate(body)
    except PydanticValidationError as exc:
        raise LmosError(
            INVALID_REQUEST, f"Invalid request. Field errors: {_field_errors(exc)}", status=400
        ) from None
    count = len(conversation.input_context.messages)
    if count > max_messages:
        raise LmosError(
            INVALID_REQUEST, f"a turn may carry at most {max_messages} messages, not {count}", status=400
        )
    return conversation


async def chat(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    turn_id = request.headers.get(TURN_ID)
    if not turn_id:
        raise LmosError(INVALID_REQUEST, f"Required header '{TURN_ID}' is not present", status=400)
    conversation = await parse_conversation(request, runtime.settings.max_messages)
    turn = TurnRequest(
        request.match_info["tenantId"],
        request.match_info["conversationId"],
        turn_id,
        conversation,
        subset=request.headers.get(SUBSET) or None,
    )
    if wants_events(request):
        return await stream_sse(request, turn, runtime.stream(turn))
    return web.json_response((await runtime.chat(turn)).to_dict(), dumps=_dumps)


async def conversation(request: web.Request) -> web.StreamResponse:
    """``GET /apis/v1/{tenantId}/chat/{conversationId}``: the stored turns, with the agent of each."""
    runtime = request.app[RUNTIME]
    tenant, conversation_id = request.match_info["tenantId"], request.match_info["conversationId"]
    turns = await runtime.store.turns(tenant, conversation_id)
    if not turns:
        raise LmosError(
            CONVERSATION_NOT_FOUND,
            f"No conversation {conversation_id} of tenant {tenant} is stored",
            status=404,
        )
    body = {
        "tenantId": tenant,
        "conversationId": conversation_id,
        "turns": [turn.to_dict() for turn in turns],
    }
    return web.json_response(body, dumps=_dumps)


async def websocket(request: web.Request) -> web.StreamResponse:
    return await stream_ws(request, request.app[RUNTIME], request.app[RUNTIME].settings.max_body)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _summary(agent: Any) -> dict[str, Any]:
    return {
        "id": agent.id,
        "name": agent.title,
        "version": agent.version.instance if agent.version and agent.version.instance else "",
        "description": agent.description or "",
        "capabilities": [
            {
                "id": capability.id,
                "name": capability.name or capability.id,
                "version": capability.version or "",
                "description": capability.description or "",
            }
            for capability in agent.capabilities or ()
        ],
    }


async def agents(request: web.Request) -> web.StreamResponse:
    """``GET /apis/v1/agents?tenantId=&channelId=&subset=`` (LMOS's AgentsController)."""
    runtime = request.app[RUNTIME]
    missing = [name for name in ("tenantId", "channelId") if not request.query.get(name)]
    if missing:
        raise LmosError(
            INVALID_REQUEST, f"Required query parameter(s) missing: {', '.join(missing)}", status=400
        )
    subset = request.query.get("subset") or runtime.settings.default_subset
    found = runtime.candidates(request.query["tenantId"], request.query["channelId"], subset)
    return web.json_response({"subset": subset, "agents": [_summary(agent) for agent in found]}, dumps=_dumps)


def _not_found(message: str) -> web.Response:
    # LMOS's CustomResourcesController answers a missing channel or routing like this.
    return web.json_response({"error": message}, status=404)


async def channels(request: web.Request) -> web.StreamResponse:
    """``GET /apis/v1/tenants/{tenantId}/channels`` (``x-subset`` narrows to one subset)."""
    table = request.app[RUNTIME].channels
    found = table.channels(request.match_info["tenantId"], request.headers.get(SUBSET) or None)
    return web.json_response(found, dumps=_dumps)


async def channel(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    tenant, channel_id = request.match_info["tenantId"], request.match_info["channelId"]
    subset = request.headers.get(SUBSET) or runtime.settings.default_subset
    document = runtime.channels.channel(tenant, channel_id, subset)
    if document is None:
        return _not_found(f"No channel found for tenant {tenant}, channel {channel_id}, subset {subset}")
    return web.json_response(document, dumps=_dumps)


async def channel_routing(request: web.Request) -> web.StreamResponse:
    runtime = request.app[RUNTIME]
    tenant, channel_id = request.match_info["tenantId"], request.match_info["channelId"]
    subset = request.headers.get(SUBSET) or runtime.settings.default_subset
    document = runtime.channels.routing(tenant, channel_id, subset)
    if document is None:
        return _not_found(
            f"No routing information found for tenant {tenant}, channel {channel_id}, subset {subset}"
        )
    return web.json_response(document, dumps=_dumps)


def create_app(
    settings: RuntimeSettings | None = None, *, runtime: Runtime | None = None, **overrides: Any
) -> web.Application:
    """The runtime as an aiohttp application; the runtime opens and closes with the app.

    Pass a :class:`RuntimeSettings` (or its fields as keywords), or a :class:`Runtime` you built
    (it is entered and left with the app).
    """
    if runtime is None:
        runtime = Runtime(settings or RuntimeSettings(**overrides))
    app = web.Application(middlewares=[errors], client_max_size=runtime.settings.max_body)
    app[RUNTIME] = runtime

    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        async with app[RUNTIME]:
            yield

    app.cleanup_ctx.append(lifespan)
    for prefix in PREFIXES:
        app.router.add_post(prefix + "/{tenantId}/chat/{conversationId}/message", chat)
        app.router.add_get(prefix + "/{tenantId}/chat/{conversationId}/ws", websocket)
        app.router.add_get(prefix + "/{tenantId}/chat/{conversationId}", conversation)
        app.router.add_get(prefix + "/agents", agents)
        app.router.add_get(prefix + "/tenants/{tenantId}/channels", channels)
        app.router.add_get(prefix + "/tenants/{tenantId}/channels/{channelId}", channel)
        app.router.add_get(prefix + "/tenants/{tenantId}/channels/{channelId}/routing", channel_routing)
    return app
