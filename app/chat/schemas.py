from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import ConfigDict, StringConstraints

from app.core.schemas import InputSchema, Schema

MessageText = Annotated[str, StringConstraints(min_length=1, max_length=20_000)]


class ChatRequest(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"message": "What does the refund policy say?"},
                {
                    "message": "And for digital goods?",
                    "conversationId": "0192f0c0-0000-7000-8000-000000000000",
                },
            ]
        }
    )

    message: MessageText
    conversation_id: UUID | None = None


class ChatMessageOut(Schema):
    """A message of a conversation. Assistant messages' ``metadata``: ``citations``,
    ``toolCalls``, ``usage``, ``model``; a failed answer has ``error`` ({code, message}) instead."""

    id: UUID
    role: Literal["user", "assistant"]
    content: str
    metadata: dict[str, Any]
    created_at: datetime


class AnswerOut(Schema):
    id: UUID
    role: Literal["assistant"] = "assistant"
    content: str
    metadata: dict[str, Any]


class ChatAnswer(Schema):
    """The JSON answer of ``POST /api/projects/{id}/chat`` (without ``Accept: text/event-stream``)."""

    conversation_id: UUID
    message: AnswerOut


class ChatSummary(Schema):
    id: UUID
    project_id: UUID
    title: str
    channel: Literal["studio", "widget"]
    message_count: int
    created_at: datetime
    updated_at: datetime


class ProjectChatOut(Schema):
    """The seed's ProjectChat: a conversation with its messages, oldest first."""

    id: UUID
    project_id: UUID
    title: str
    channel: Literal["studio", "widget"]
    user_id: UUID | None
    messages: list[ChatMessageOut]
    created_at: datetime
    updated_at: datetime
