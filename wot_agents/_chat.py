"""The chat convention: how any agent is talked to, the same way over every binding.

A chat agent has an action ``chat`` taking the LMOS message list (``{"messages": [{"role":
"user", "content": "..."}], "conversationId": ..., "turnId": ...}``) and returning the reply
(``{"messages": [{"role": "assistant", "content": "..."}], ...}``). An agent that streams its
reply also emits its parts on the event ``chatStream`` as ``{"turnId", "delta", "done"}``, so a
consumer subscribed to it sees the reply grow while the action runs. Both are ordinary
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

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._agent import Agent, Event
from ._model import ThingDescription

__all__ = [
    "CHAT_ACTION",
    "CHAT_STREAM_EVENT",
    "ChatChunk",
    "ChatHandler",
    "ChatMessage",
    "ChatReply",
    "ChatRequest",
    "ChatStream",
    "chat_handler",
    "is_chat_agent",
]

CHAT_ACTION = "chat"
CHAT_STREAM_EVENT = "chatStream"


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class ChatMessage(_Wire):
    """One message of a conversation, as in the LMOS runtime's message list."""

    role: Literal["user", "assistant", "system"]
    content: str
    format: str | None = None


class ChatRequest(_Wire):
    """The input of ``chat``: the conversation so far, newest message last."""

    messages: list[ChatMessage] = Field(min_length=1)
    conversation_id: str | None = Field(default=None, alias="conversationId")
    turn_id: str | None = Field(default=None, alias="turnId")


class ChatReply(_Wire):
    """The output of ``chat``: the agent's reply messages for the turn."""

    messages: list[ChatMessage]
    conversation_id: str | None = Field(default=None, alias="conversationId")
    turn_id: str | None = Field(default=None, alias="turnId")

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

    The handler returns the reply as text, a message or a whole :class:`ChatReply`.
    """

    def register(handler: ChatHandler) -> ChatHandler:
        stream_event = agent.event(
            CHAT_STREAM_EVENT, ChatChunk, description="Parts of chat replies as they are produced, by turnId."
        )

        async def chat(request: ChatRequest) -> ChatReply:
            turn_id = request.turn_id or str(uuid.uuid4())
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
            return reply.model_copy(update={"turn_id": turn_id, "conversation_id": request.conversation_id})

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
