from typing import Any
from uuid import UUID

from sqlalchemy import Select, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ChatMessage, ProjectChat


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
        for_update: bool = False,
    ) -> ProjectChat | None:
        """The conversation if it belongs to this project and channel (and, for widgets, to this
        widget and visitor)."""
        stmt = select(ProjectChat).where(
            ProjectChat.id == chat_id, ProjectChat.project_id == project_id, ProjectChat.channel == channel
        )
        if widget_id is not None or visitor_id is not None:
            stmt = stmt.where(ProjectChat.widget_id == widget_id, ProjectChat.visitor_id == visitor_id)
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

    async def delete_chat(self, db: AsyncSession, chat_id: UUID) -> None:
        await db.execute(delete(ChatMessage).where(ChatMessage.chat_id == chat_id))
        await db.execute(delete(ProjectChat).where(ProjectChat.id == chat_id))


chat_repository = ChatRepository()
