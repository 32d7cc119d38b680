import enum
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin


class ProjectStatus(enum.StrEnum):
    DRAFT = "draft"
    IN_DEVELOPMENT = "in_development"
    READY = "ready"
    PUBLISHED = "published"
    HELD = "held"
    ARCHIVED = "archived"


class Project(IdMixin, TimestampMixin, Base):
    __tablename__ = "projects"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    prompt: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default=ProjectStatus.DRAFT)
    llm: Mapped[str | None] = mapped_column(String(200))
    # Ids of the MCP clients this project uses (validated by the MCP domain when it lands).
    mcp_servers: Mapped[list[str]] = mapped_column(JSONB, default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    deleted_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint(
            "status IN ('draft', 'in_development', 'ready', 'published', 'held', 'archived')",
            name="status",
        ),
    )
