from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, ColumnElement, Numeric, Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ChatMessage, ProjectChat

# An answer's ``metadata.usage`` (``usage_out``): what the LLM calls of the turn used and cost.
_USAGE = ChatMessage.metadata_["usage"]
_ANSWER = ChatMessage.role == "assistant"
_COST = _USAGE["costUsd"].astext.cast(Numeric)
CUSTOMER_USAGE_COLUMNS: dict[str, ColumnElement[Any]] = {
    "customerId": ProjectChat.customer_id.expression,
    "messages": func.count().filter(ChatMessage.role == "user"),
    "answers": func.count().filter(_ANSWER, ~ChatMessage.metadata_.has_key("error")),
    "inputTokens": func.coalesce(func.sum(_USAGE["inputTokens"].astext.cast(BigInteger)), 0),
    "outputTokens": func.coalesce(func.sum(_USAGE["outputTokens"].astext.cast(BigInteger)), 0),
    "costUsd": func.coalesce(func.sum(_COST), 0),
    "unpricedAnswers": func.count().filter(_ANSWER, ChatMessage.metadata_.has_key("usage"), _COST.is_(None)),
    "conversations": func.count(func.distinct(ProjectChat.id)),
    "firstSeenAt": func.min(ChatMessage.created_at),
    "lastSeenAt": func.max(ChatMessage.created_at),
}


class ChatRepository:
    async def chat(
        self,
        db: AsyncSession,
        project_id: UUID,
        chat_id: UUID,
        *,
        channel: str,
        widget_id: UUID | None = None,
        visitor_id: str | None = None,
        customer_id: str | None = None,
        for_update: bool = False,
    ) -> ProjectChat | None:
        """The conversation if it belongs to this project and channel (and, for widgets, to this
        widget, visitor and verified customer: None only matches an anonymous conversation)."""
        stmt = select(ProjectChat).where(
            ProjectChat.id == chat_id, ProjectChat.project_id == project_id, ProjectChat.channel == channel
        )
        if widget_id is not None or visitor_id is not None:
            stmt = stmt.where(
                ProjectChat.widget_id == widget_id,
                ProjectChat.visitor_id == visitor_id,
                ProjectChat.customer_id.is_not_distinct_from(customer_id),
            )
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def lock(self, db: AsyncSession, chat_id: UUID) -> ProjectChat | None:
        stmt = select(ProjectChat).where(ProjectChat.id == chat_id).with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    def summaries(self, project_id: UUID, channel: str) -> Select[ProjectChat, Any]:
        counts = (
            select(ChatMessage.chat_id, func.count().label("message_count"))
            .group_by(ChatMessage.chat_id)
            .subquery()
        )
        return (
            select(ProjectChat, func.coalesce(counts.c.message_count, 0))
            .outerjoin(counts, counts.c.chat_id == ProjectChat.id)
            .where(ProjectChat.project_id == project_id, ProjectChat.channel == channel)
        )

    async def messages(self, db: AsyncSession, chat_id: UUID) -> list[ChatMessage]:
        stmt = (
            select(ChatMessage)
            .where(ChatMessage.chat_id == chat_id)
            .order_by(ChatMessage.created_at, ChatMessage.id)
        )
        return list((await db.execute(stmt)).scalars())

    async def history(self, db: AsyncSession, chat_id: UUID, limit: int) -> list[ChatMessage]:
        """At most the last ``limit`` messages worth sending to a model, oldest first, starting
        with a question. Failed and empty answers are left out: models refuse an empty
        assistant turn (Anthropic), which would break the conversation for good."""
        if limit <= 0:
            return []
        empty_answer = (ChatMessage.role == "assistant") & ChatMessage.content.regexp_match(r"^\s*$")
        stmt = (
            select(ChatMessage)
            .where(ChatMessage.chat_id == chat_id, ~ChatMessage.metadata_.has_key("error"), ~empty_answer)
            .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
            .limit(limit)
        )
        messages = list(reversed((await db.execute(stmt)).scalars().all()))
        while messages and messages[0].role != "user":
            messages.pop(0)
        return messages

    async def last_message(self, db: AsyncSession, chat_id: UUID) -> ChatMessage | None:
        stmt = (
            select(ChatMessage)
            .where(ChatMessage.chat_id == chat_id)
            .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
            .limit(1)
        )
        return (await db.execute(stmt)).scalar_one_or_none()

    def customer_usage(
        self, widget_id: UUID, start: datetime, end: datetime, *, order_by: str, descending: bool
    ) -> Select[Any]:
        """Per verified customer of a widget, from the messages stored in ``[start, end)``: one
        row of ``CUSTOMER_USAGE_COLUMNS`` each, ordered by the column ``order_by`` names, the
        customer id breaking ties."""
        column = CUSTOMER_USAGE_COLUMNS[order_by]
        tiebreak = ProjectChat.customer_id
        return (
            select(*(expression.label(label) for label, expression in CUSTOMER_USAGE_COLUMNS.items()))
            .select_from(ProjectChat)
            .join(ChatMessage, ChatMessage.chat_id == ProjectChat.id)
            .where(
                ProjectChat.widget_id == widget_id,
                ProjectChat.channel == "widget",
                ProjectChat.customer_id.is_not(None),
                ChatMessage.created_at >= start,
                ChatMessage.created_at < end,
            )
            .group_by(ProjectChat.customer_id)
            .order_by(
                column.desc() if descending else column.asc(),
                tiebreak.desc() if descending else tiebreak.asc(),
            )
        )

    async def delete_chat(self, db: AsyncSession, chat_id: UUID) -> None:
        await db.execute(delete(ChatMessage).where(ChatMessage.chat_id == chat_id))
        await db.execute(delete(ProjectChat).where(ProjectChat.id == chat_id))


chat_repository = ChatRepository()
