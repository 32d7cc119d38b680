"""Embeddable chat widgets: one per end user and purchased project (or a builder's preview),
and the monthly message counters their plan quota is checked against."""

import enum
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin


class WidgetKind(enum.StrEnum):
    LIVE = "live"  # an end user's widget of a project they bought
    PREVIEW = "preview"  # the builder's own widget of their project


class Widget(IdMixin, TimestampMixin, Base):
    """The seed's Widget; its ``config`` is ``appearance`` + ``behaviour`` (the seed's WidgetConfig)."""

    __tablename__ = "widgets"

    project_id: Mapped[UUID] = mapped_column(ForeignKey("projects.id"), index=True)
    # The owner: the end user who bought the project, or the builder for a preview widget.
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"), index=True)
    builder_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"))
    purchase_id: Mapped[UUID | None] = mapped_column(ForeignKey("purchases.id"))
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(200))
    public_key: Mapped[str] = mapped_column(String(64), unique=True)
    # Encrypted (app.core.crypto), not hashed: identity signatures are verified with it.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    # Set by a rotation: a retried generate request no longer shows the secret after it.
    secret_rotated_at: Mapped[datetime | None]
    appearance: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    behaviour: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(200))

    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_widgets_user_idempotency_key"),
        CheckConstraint("kind IN ('live', 'preview')", name="kind"),
    )


class WidgetUsage(Base):
    """Messages the visitors of one owner's widgets of one project sent in a calendar month (UTC):
    the plan quota's counter, shared by all those widgets (a second widget adds no quota), bumped
    in the transaction that stores each question, and when the 80 % warning and the 100 % notice
    were recorded (once per month each)."""

    __tablename__ = "widget_usage"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    project_id: Mapped[UUID] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    month: Mapped[date] = mapped_column(primary_key=True)
    messages: Mapped[int] = mapped_column(default=0)
    warned_at: Mapped[datetime | None]
    reached_at: Mapped[datetime | None]

    __table_args__ = (CheckConstraint("messages >= 0", name="messages_not_negative"),)
