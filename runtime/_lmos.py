"""The LMOS runtime's wire format: the chat request, the reply and the ``{errorCode, message}`` errors.

Field names follow eclipse-lmos/lmos-runtime (``Conversation``, ``InputContext``, ``SystemContext``,
``UserContext``, ``AssistantMessage``) and the Arc ``Message``, so an LMOS client's JSON parses
unchanged. Members the runtime does not know are kept (``extra="allow"``): a newer client's fields
are passed through, not refused.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from wot_agents import (
    AnonymizationEntity,
    BinaryData,
    ChatMessage,
    ChatRequest,
    ChatUserContext,
    ContextEntry,
    ConversationContext,
    WotAgentsError,
)

__all__ = [
    "AGENT_CLIENT_EXCEPTION",
    "AGENT_NOT_FOUND",
    "CONVERSATION_NOT_FOUND",
    "INTERNAL_SERVER_ERROR",
    "INVALID_REQUEST",
    "SERVICE_UNAVAILABLE",
    "AnonymizationEntity",
    "AssistantMessage",
    "BinaryData",
    "Conversation",
    "InputContext",
    "KeyValuePair",
    "LmosError",
    "Message",
    "SystemContext",
    "UserContext",
]

INVALID_REQUEST = "INVALID_REQUEST"
AGENT_NOT_FOUND = "AGENT_NOT_FOUND"
AGENT_CLIENT_EXCEPTION = "AGENT_CLIENT_EXCEPTION"
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
#: Not LMOS's: more streams are open than ``max_streams`` allows (503).
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
#: Not LMOS's (it keeps no conversations): ``GET .../chat/{conversationId}`` of an unknown one.
CONVERSATION_NOT_FOUND = "CONVERSATION_NOT_FOUND"


class LmosError(WotAgentsError):
    """A failure the LMOS API reports as ``{"errorCode": ..., "message": ...}`` with ``status``."""

    def __init__(self, code: str, message: str, *, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def to_dict(self) -> dict[str, str]:
        return {"errorCode": self.code, "message": self.message}


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True, extra="allow")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


#: LMOS's ``{key, value}`` context parameters: the SDK's (one home), handed on to the agent.
KeyValuePair = ContextEntry


class Message(_Wire):
    """One message of the conversation (Arc's ``Message``)."""

    role: Literal["user", "assistant", "system"]
    content: str
    format: str = "text"
    turn_id: str | None = Field(default=None, alias="turnId")
    binary_data: list[BinaryData] | None = Field(default=None, alias="binaryData")


class InputContext(_Wire):
    messages: list[Message] = Field(min_length=1)
    explicit_agent: str | None = Field(default=None, alias="explicitAgent")
    anonymization_entities: list[AnonymizationEntity] | None = Field(
        default=None, alias="anonymizationEntities"
    )


class SystemContext(_Wire):
    channel_id: str = Field(alias="channelId", min_length=1)
    context_params: list[KeyValuePair] = Field(default_factory=list, alias="contextParams")


class UserContext(_Wire):
    user_id: str = Field(alias="userId")
    user_token: str | None = Field(default=None, alias="userToken")
    context_params: list[KeyValuePair] = Field(default_factory=list, alias="contextParams")


class Conversation(_Wire):
    """The body of ``POST .../chat/{conversationId}/message``."""

    input_context: InputContext = Field(alias="inputContext")
    system_context: SystemContext = Field(alias="systemContext")
    user_context: UserContext = Field(alias="userContext")

    def agent_request(self, conversation_id: str) -> ChatRequest:
        """What the chosen agent is sent (the chat convention, as an LMOS runtime sends an Arc
        ``AgentRequest``): the messages with their attachments, and the conversation's
        anonymization entities in ``conversationContext``, the channel's context parameters
        (``systemContext``) and the user (``userContext``: id, token, profile)."""
        return ChatRequest(
            messages=[
                ChatMessage(role=m.role, content=m.content, format=m.format, binary_data=m.binary_data)
                for m in self.input_context.messages
            ],
            conversation_id=conversation_id,
            conversation_context=ConversationContext(
                conversation_id=conversation_id,
                anonymization_entities=self.input_context.anonymization_entities,
            ),
            system_context=self.system_context.context_params,
            user_context=ChatUserContext(
                user_id=self.user_context.user_id,
                user_token=self.user_context.user_token,
                profile=self.user_context.context_params,
            ),
        )

    @property
    def query(self) -> str:
        """The turn's question: the last user message."""
        for message in reversed(self.input_context.messages):
            if message.role == "user":
                return message.content
        return self.input_context.messages[-1].content


class AssistantMessage(_Wire):
    """The reply. ``content`` and ``anonymizationEntities`` are LMOS's; the rest is added beside them."""

    content: str
    anonymization_entities: list[AnonymizationEntity] = Field(
        default_factory=list, alias="anonymizationEntities"
    )
