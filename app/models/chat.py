"""Project conversations: the builder's studio chats and (later) widget visitors' chats."""

import enum
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, utcnow


class ChatChannel(enum.StrEnum):
    STUDIO = "studio"
    WIDGET = "widget"


class ProjectChat(IdMixin, TimestampMixin, Base):
    __tablename__ = "project_chats"

    project_id: Mapped[UUID] = mapped_column(ForeignKey("projects.id"))
    user_id: Mapped[UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    channel: Mapped[str] = mapped_column(String(10), default=ChatChannel.STUDIO)
    # No foreign key: widgets arrive later in their own migration.
    widget_id: Mapped[UUID | None] = mapped_column(index=True)
    visitor_id: Mapped[str | None] = mapped_column(String(100))
    # The host site's user id when the widget session was opened with a verified identity.
    customer_id: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))

    __table_args__ = (
        CheckConstraint("channel IN ('studio', 'widget')", name="channel"),
        Index("ix_project_chats_project_channel_updated", "project_id", "channel", "updated_at"),
        # A widget's per-customer usage report.
        Index(
            "ix_project_chats_widget_customer",
            "widget_id",
            "customer_id",
            postgresql_where=text("customer_id IS NOT NULL"),
        ),
    )


class ChatMessage(IdMixin, Base):
    __tablename__ = "chat_messages"

    chat_id: Mapped[UUID] = mapped_column(ForeignKey("project_chats.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())

    __table_args__ = (
        CheckConstraint("role IN ('user', 'assistant')", name="role"),
        Index("ix_chat_messages_chat_created", "chat_id", "created_at"),
    )
