"""Streamed answers: Server-Sent Events on the chat endpoint, and a WebSocket for turns and parts.

LMOS's REST endpoint cannot stream; here the same endpoint answers as SSE when the client asks
for ``text/event-stream``, and ``GET .../chat/{conversationId}/ws`` carries turns in and parts
out. Both are fed by the agent's ``chatStream`` events and end with the same reply object as the
JSON answer:

SSE::

    event: delta
    data: {"turnId": "t1", "delta": "It will"}

    event: reply
    data: {"content": "It will rain.", "anonymizationEntities": [], "agent": {...}, "routing": {...}}

A failure before the first part is the usual JSON error with its status; after it, an
``event: error`` with ``{"errorCode", "message"}`` ends the stream. On the WebSocket each frame is
a JSON object with ``type`` ``delta``, ``reply`` or ``error`` and the ``turnId`` it belongs to.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError as PydanticValidationError

from wot_agents import EVENT_STREAM, EventStream, ServerSentEvent, TraceContext, current_trace

from ._lmos import INTERNAL_SERVER_ERROR, INVALID_REQUEST, SERVICE_UNAVAILABLE, Conversation, LmosError
from ._runtime import Turn, TurnRequest

__all__ = ["KEEPALIVE", "stream_sse", "stream_ws", "wants_events"]

log = logging.getLogger("runtime.stream")

#: Seconds between SSE keep-alive comments while an agent is thinking (proxies close idle streams).
KEEPALIVE = 15.0


def wants_events(request: web.Request) -> bool:
    return EVENT_STREAM in request.headers.get("Accept", "")


async def stream_sse(
    request: web.Request, turn: TurnRequest, items: AsyncGenerator[str | Turn, None]
) -> web.StreamResponse:
    """Answer the turn as an SSE stream; see the module docstring for the events."""
    try:
        first = await anext(items)  # routing failures and an agent failing at once stay JSON errors
    except BaseException:
        await items.aclose()
        raise

    async def events() -> AsyncIterator[ServerSentEvent]:
        item: str | Turn = first
        try:
            while True:
                if isinstance(item, Turn):
                    yield ServerSentEvent(_json(item.to_dict()), event="reply")
                    return
                yield ServerSentEvent(_json({"turnId": turn.turn_id, "delta": item}), event="delta")
                try:
                    item = await anext(items)
                except StopAsyncIteration:
                    return
        except LmosError as error:
            yield ServerSentEvent(_json(error.to_dict()), event="error")
        finally:
            await items.aclose()

    stream = EventStream(request, keepalive=KEEPALIVE)
    try:
        await stream.open(comment=None)
    except ConnectionResetError:
        await items.aclose()
        return stream.response
    await stream.pipe(events())  # closes events(), hence the agent's stream, however it ends
    with contextlib.suppress(ConnectionResetError):
        await stream.response.write_eof()
    return stream.response


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


async def stream_ws(
    request: web.Request,
    runtime: Any,
    max_message: int,
    sockets: dict[web.WebSocketResponse, set[asyncio.Task[None]]],
) -> web.StreamResponse:
    """``GET .../chat/{conversationId}/ws``: each text frame is one turn, ``{"turnId", "subset"?,
    "inputContext", "systemContext", "userContext"}``; turns run concurrently, their frames
    tagged with their ``turnId``."""
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=max_message)
    await ws.prepare(request)
    tenant, conversation_id = request.match_info["tenantId"], request.match_info["conversationId"]
    running: set[asyncio.Task[None]] = set()
    sockets[ws] = running  # a graceful shutdown lets these finish, then closes the socket

    async def send(frame: dict[str, Any]) -> None:
        if not ws.closed:
            await ws.send_str(_json(frame))

    async def answer(turn: TurnRequest) -> None:
        current_trace.set(turn.trace)  # this task's own context: nothing to restore after it
        items = runtime.stream(turn)
        try:
            async for item in items:
                if isinstance(item, Turn):
                    await send({"type": "reply", "turnId": turn.turn_id, "reply": item.to_dict()})
                else:
                    await send({"type": "delta", "turnId": turn.turn_id, "delta": item})
        except LmosError as error:
            await send({"type": "error", "turnId": turn.turn_id, **error.to_dict()})
        except Exception:
            log.exception("turn %s failed", turn.turn_id)
            await send({"type": "error", "turnId": turn.turn_id, "errorCode": INTERNAL_SERVER_ERROR,
                        "message": "the runtime failed; see its log"})  # fmt: skip
        finally:
            await items.aclose()

    try:
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            try:
                if runtime.stopping:
                    raise LmosError(SERVICE_UNAVAILABLE, "the runtime is shutting down", status=503)
                turn = _turn(message.data, tenant, conversation_id, runtime.settings.max_messages)
            except LmosError as error:
                await send({"type": "error", "turnId": None, **error.to_dict()})
                continue
            task = asyncio.create_task(answer(turn), name=f"runtime ws turn {turn.turn_id}")
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        sockets.pop(ws, None)
        for task in running:  # the client went away: its turns' answers have nowhere to go
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    return ws


def _turn(text: str, tenant: str, conversation_id: str, max_messages: int) -> TurnRequest:
    try:
        frame = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LmosError(INVALID_REQUEST, f"the frame is not JSON: {exc}", status=400) from None
    if not isinstance(frame, dict) or not isinstance(frame.get("turnId"), str) or not frame["turnId"]:
        raise LmosError(INVALID_REQUEST, "a turn frame is a JSON object with a string 'turnId'", status=400)
    try:
        conversation = Conversation.model_validate(frame)
    except PydanticValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise LmosError(INVALID_REQUEST, f"Invalid request. Field errors: {problems}", status=400) from None
    if len(conversation.input_context.messages) > max_messages:
        raise LmosError(INVALID_REQUEST, f"a turn may carry at most {max_messages} messages", status=400)
    subset = frame.get("subset") if isinstance(frame.get("subset"), str) else None
    parent = TraceContext.parse(_text(frame.get("traceparent")), _text(frame.get("tracestate")))
    trace = (parent or TraceContext.new()).child()
    return TurnRequest(tenant, conversation_id, frame["turnId"], conversation, subset=subset, trace=trace)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
