"""The runtime's HTTP API: the LMOS chat endpoint and LMOS's info endpoints, on aiohttp.

Every path is served under ``/apis/v1`` and under the older ``/lmos/runtime/apis/v1`` that LMOS's
READMEs show. Errors on these paths are LMOS's ``{"errorCode", "message"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import orjson
from aiohttp import WSCloseCode, web
from pydantic import ValidationError as PydanticValidationError

from wot_agents import TraceContext, use_trace

from ._chat_page import add_chat_page
from ._config import RuntimeSettings
from ._lmos import (
    CONVERSATION_NOT_FOUND,
    INTERNAL_SERVER_ERROR,
    INVALID_REQUEST,
    SERVICE_UNAVAILABLE,
    Conversation,
    LmosError,
)
from ._openapi import openapi_document
from ._runtime import Runtime, TurnRequest
from ._stream import stream_sse, stream_ws, wants_events

__all__ = ["PREFIXES", "RUNTIME", "create_app"]

log = logging.getLogger("runtime.http")

#: The API's path prefixes: the current one, and the one LMOS's READMEs still show.
PREFIXES = ("/apis/v1", "/lmos/runtime/apis/v1")
TURN_ID = "x-turn-id"
SUBSET = "x-subset"

RUNTIME = web.AppKey("runtime", Runtime)
SOCKETS = web.AppKey("sockets", dict[web.WebSocketResponse, set[asyncio.Task[None]]])

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
    # pydantic parses and validates the bytes in one pass (no dict of the body in between).
    try:
        conversation = Conversation.model_validate_json(await request.read())
    except PydanticValidationError as exc:
        bad_json = next((e for e in exc.errors() if e["type"] == "json_invalid"), None)
        if bad_json is not None:
            raise LmosError(
                INVALID_REQUEST, f"the body is not JSON: {bad_json['ctx']['error']}", status=400
            ) from None
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
    trace = TraceContext.parse(request.headers.get("traceparent"), request.headers.get("tracestate"))
    turn = TurnRequest(
        request.match_info["tenantId"],
        request.match_info["conversationId"],
        turn_id,
        conversation,
        subset=request.headers.get(SUBSET) or None,
        trace=(trace or TraceContext.new()).child(),
    )
    streaming = wants_events(request)
    started = time.perf_counter()
    outcome = "ok"
    try:
        with use_trace(turn.trace):
            if streaming:
                with open_stream(runtime):
                    return await stream_sse(request, turn, runtime.stream(turn))
            answer = (await runtime.chat(turn)).to_dict()
        return web.Response(
            body=orjson.dumps(answer),
            content_type="application/json",
            headers=turn.trace.headers() if turn.trace else None,
        )
    except LmosError as error:
        outcome = error.code
        raise
    finally:
        runtime.metrics.inc("runtime_turns_total", tenant=turn.tenant, outcome=outcome)
        runtime.metrics.observe(
            "runtime_turn_seconds", time.perf_counter() - started, transport="sse" if streaming else "json"
        )


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
    runtime = request.app[RUNTIME]
    with open_stream(runtime):
        return await stream_ws(request, runtime, runtime.settings.max_body, request.app[SOCKETS])


@contextlib.contextmanager
def open_stream(runtime: Runtime) -> Iterator[None]:
    """Count an SSE or WebSocket stream against ``max_streams`` (503 past it)."""
    if runtime.open_streams >= runtime.settings.max_streams:
        raise LmosError(
            SERVICE_UNAVAILABLE,
            f"the runtime serves at most {runtime.settings.max_streams} streams at once; retry shortly",
            status=503,
        )
    runtime.open_streams += 1
    try:
        yield
    finally:
        runtime.open_streams -= 1


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus metrics (text exposition format 0.0.4)."""
    text = request.app[RUNTIME].metrics.render()
    response = web.Response(text=text, content_type="text/plain", charset="utf-8")
    response.content_type = "text/plain"
    response.headers["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8"
    return response


async def liveness(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "UP"})


async def readiness(request: web.Request) -> web.StreamResponse:
    """Ready once the candidates are known; not ready while shutting down (Spring's names: LMOS's probes)."""
    if request.app[RUNTIME].ready:
        return web.json_response({"status": "UP"})
    return web.json_response({"status": "OUT_OF_SERVICE"}, status=503)


async def openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(openapi_document(), dumps=_dumps)


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

    async def stop_accepting_turns(app: web.Application) -> None:
        # Running turns finish (the server waits for them); new streams are refused, open
        # WebSockets are told the runtime is going away once their turns are answered.
        runtime = app[RUNTIME]
        runtime.stopping = True

        async def finish(ws: web.WebSocketResponse, running: set[asyncio.Task[None]]) -> None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(runtime.settings.agent_timeout):
                    await asyncio.gather(*running, return_exceptions=True)
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"the runtime is shutting down")

        await asyncio.gather(*(finish(ws, set(running)) for ws, running in list(app[SOCKETS].items())))

    app[SOCKETS] = {}
    app.cleanup_ctx.append(lifespan)
    app.on_shutdown.append(stop_accepting_turns)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/health", readiness)
    app.router.add_get("/health/liveness", liveness)
    app.router.add_get("/health/readiness", readiness)
    add_chat_page(app, lambda app: app[RUNTIME])  # the browser page at /chat (runtime/chat/)
    for prefix in PREFIXES:
        app.router.add_post(prefix + "/{tenantId}/chat/{conversationId}/message", chat)
        app.router.add_get(prefix + "/{tenantId}/chat/{conversationId}/ws", websocket)
        app.router.add_get(prefix + "/{tenantId}/chat/{conversationId}", conversation)
        app.router.add_get(prefix + "/agents", agents)
        app.router.add_get(prefix + "/tenants/{tenantId}/channels", channels)
        app.router.add_get(prefix + "/tenants/{tenantId}/channels/{channelId}", channel)
        app.router.add_get(prefix + "/tenants/{tenantId}/channels/{channelId}/routing", channel_routing)
    return app
