"""The chat convention: how any agent is talked to, the same way over every binding.

A chat agent has an action ``chat`` taking the LMOS message list (``{"messages": [{"role":
"user", "content": "..."}], "conversationId": ..., "turnId": ...}``) and returning the reply
(``{"messages": [{"role": "assistant", "content": "..."}], ...}``). An agent that streams its
reply also emits its parts on the event ``chatStream`` as ``{"turnId", "delta", "done"}``, so a
consumer subscribed to it sees the reply grow while the action runs. A message may carry
attachments (``binaryData``: ``[{"mimeType", "dataAsBase64" | "source"}]``, Arc's ``Message``)
and the request the conversation's anonymization entities as an LMOS agent receives them
(``"conversationContext": {"conversationId", "anonymizationEntities": [{"type", "value",
"replacement"}]}``, Arc's ``AgentRequest``); the reply returns the entities (Arc's
``AgentResult``), so the client keeps its map of replacements. Both are ordinary
affordances: HTTP, WebSocket and MQTT carry them like any other, and a runtime needs nothing but
the TD to tell a chat agent (:func:`is_chat_agent`) and to talk to it
(:meth:`ConsumedThing.chat <wot_agents.ConsumedThing.chat>`,
:meth:`~wot_agents.ConsumedThing.chat_stream`).

Declaring one::

    @chat_handler(agent)
    async def reply(request: ChatRequest, stream: ChatStream) -> str:
        for word in ("It", " will", " rain."):
            await stream.send(word)
        return "It will rain."
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from ._agent import Agent, Event
from ._model import ThingDescription
from ._trace import TraceContext, current_trace

__all__ = [
    "CHAT_ACTION",
    "CHAT_STREAM_EVENT",
    "AnonymizationEntity",
    "BinaryData",
    "ChatChunk",
    "ChatHandler",
    "ChatMessage",
    "ChatReply",
    "ChatRequest",
    "ChatStream",
    "ChatUserContext",
    "ContextEntry",
    "ConversationContext",
    "chat_handler",
    "is_chat_agent",
]

log = logging.getLogger("wot_agents.chat")

CHAT_ACTION = "chat"
CHAT_STREAM_EVENT = "chatStream"


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class BinaryData(_Wire):
    """An attachment of a message (Arc's ``BinaryData``): inline as base64, or by reference."""

    mime_type: str = Field(alias="mimeType")
    data_as_base64: str | None = Field(default=None, alias="dataAsBase64")
    source: str | None = None

    @model_validator(mode="after")
    def _one_payload(self) -> BinaryData:
        if (self.data_as_base64 is None) == (self.source is None):
            raise ValueError("binaryData needs exactly one of dataAsBase64 or source")
        return self


class AnonymizationEntity(_Wire):
    """A value the client replaced before the text reached the agent (``value`` -> ``replacement``)."""

    type: str
    value: str
    replacement: str


class ChatMessage(_Wire):
    """One message of a conversation, as in the LMOS runtime's message list."""

    role: Literal["user", "assistant", "system"]
    content: str
    format: str | None = None
    binary_data: list[BinaryData] | None = Field(default=None, alias="binaryData")


class ContextEntry(_Wire):
    """A key and its value (Arc's ``SystemContextEntry`` and ``ProfileEntry``)."""

    key: str
    value: str


class ChatUserContext(_Wire):
    """Arc's ``userContext``: the user, their token (for an agent acting on their behalf, as the
    LMOS runtime hands it on) and profile entries."""

    user_id: str | None = Field(default=None, alias="userId")
    user_token: str | None = Field(default=None, alias="userToken")
    profile: list[ContextEntry] = Field(default_factory=list)


class ConversationContext(_Wire):
    """Arc's ``conversationContext``: what an LMOS runtime tells an agent about the conversation."""

    conversation_id: str | None = Field(default=None, alias="conversationId")
    turn_id: str | None = Field(default=None, alias="turnId")
    anonymization_entities: list[AnonymizationEntity] | None = Field(
        default=None, alias="anonymizationEntities"
    )


class ChatRequest(_Wire):
    """The input of ``chat``: the conversation so far, newest message last.

    ``conversationContext``, ``systemContext`` and ``userContext`` are the LMOS agent
    request's (Arc's ``AgentRequest``): an LMOS runtime sends the conversation's anonymization
    entities, the channel's context parameters and the user there.
    """

    messages: list[ChatMessage] = Field(min_length=1)
    conversation_id: str | None = Field(default=None, alias="conversationId")
    turn_id: str | None = Field(default=None, alias="turnId")
    conversation_context: ConversationContext | None = Field(default=None, alias="conversationContext")
    system_context: list[ContextEntry] | None = Field(default=None, alias="systemContext")
    user_context: ChatUserContext | None = Field(default=None, alias="userContext")
    _trace: TraceContext | None = PrivateAttr(default=None)

    @property
    def anonymization_entities(self) -> list[AnonymizationEntity]:
        """The conversation's anonymization entities (``conversationContext``), if any."""
        context = self.conversation_context
        return list(context.anonymization_entities or ()) if context is not None else []

    @property
    def trace(self) -> TraceContext | None:
        """The W3C trace the caller sent with the request (the agent's own span of it), if any;
        also :data:`wot_agents.current_trace` while the handler runs."""
        return self._trace


class ChatReply(_Wire):
    """The output of ``chat``: the agent's reply messages for the turn.

    ``anonymizationEntities`` (Arc's ``AgentResult``): the entities the client should know of
    after this turn; None lets :func:`chat_handler` return the request's own.
    """

    messages: list[ChatMessage]
    conversation_id: str | None = Field(default=None, alias="conversationId")
    turn_id: str | None = Field(default=None, alias="turnId")
    anonymization_entities: list[AnonymizationEntity] | None = Field(
        default=None, alias="anonymizationEntities"
    )

    @property
    def text(self) -> str:
        """The reply's assistant messages as one text."""
        return "".join(message.content for message in self.messages if message.role == "assistant")


class ChatChunk(_Wire):
    """One part of a streamed reply (event ``chatStream``); ``done`` closes the turn."""

    turn_id: str = Field(alias="turnId")
    delta: str = ""
    done: bool = False


class ChatStream:
    """Handed to a chat handler to send its reply in parts while it works."""

    def __init__(self, event: Event, turn_id: str) -> None:
        self._event = event
        self.turn_id = turn_id

    async def send(self, delta: str) -> None:
        """Emit one part; subscribers of ``chatStream`` receive it at once."""
        await self._event.emit(ChatChunk(turn_id=self.turn_id, delta=delta))


ChatHandler = Callable[[ChatRequest, ChatStream], Awaitable[str | ChatMessage | ChatReply]]


def chat_handler(agent: Agent, *, description: str | None = None) -> Callable[[ChatHandler], ChatHandler]:
    """Make ``handler`` the agent's ``chat`` action (and declare the ``chatStream`` event).

    The handler returns the reply as text, a message or a whole :class:`ChatReply`. The reply
    carries the request's anonymization entities unless the handler's :class:`ChatReply` sets
    its own (an LMOS agent returns the entities of the conversation).
    """

    def register(handler: ChatHandler) -> ChatHandler:
        stream_event = agent.event(
            CHAT_STREAM_EVENT, ChatChunk, description="Parts of chat replies as they are produced, by turnId."
        )

        async def chat(request: ChatRequest) -> ChatReply:
            context = request.conversation_context
            turn_id = request.turn_id or (context.turn_id if context else None) or str(uuid.uuid4())
            conversation_id = request.conversation_id or (context.conversation_id if context else None)
            request._trace = current_trace.get()
            log.debug(
                "chat turn %s of conversation %s, trace %s",
                turn_id,
                conversation_id,
                request.trace.trace_id if request.trace else "-",
            )
            try:
                result = await handler(request, ChatStream(stream_event, turn_id))
            finally:
                await stream_event.emit(ChatChunk(turn_id=turn_id, done=True))
            if isinstance(result, str):
                reply = ChatReply(messages=[ChatMessage(role="assistant", content=result)])
            elif isinstance(result, ChatMessage):
                reply = ChatReply(messages=[result])
            else:
                reply = result
            update: dict[str, Any] = {"turn_id": turn_id, "conversation_id": conversation_id}
            if reply.anonymization_entities is None and context is not None:
                update["anonymization_entities"] = context.anonymization_entities
            return reply.model_copy(update=update)

        agent.action(
            name=CHAT_ACTION,
            description=description or handler.__doc__ or "Answers a conversation (LMOS message list).",
        )(chat)
        return handler

    return register


def is_chat_agent(td: ThingDescription | Mapping[str, Any]) -> bool:
    """Whether a TD (a model or a parsed document) follows the chat convention: a ``chat`` action."""
    actions = td.get("actions") if isinstance(td, Mapping) else td.actions
    return isinstance(actions, Mapping) and CHAT_ACTION in actions
