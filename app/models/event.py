from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Index, SmallInteger, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class OutboxEvent(Base):
    """A domain event, written in the transaction of the change it describes."""

    __tablename__ = "outbox_events"

    event_id: Mapped[UUID] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    schema_version: Mapped[int] = mapped_column(SmallInteger, default=1)
    occurred_at: Mapped[datetime] = mapped_column(server_default=func.now())
    actor_id: Mapped[UUID | None]
    subject_id: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    # Set by the relay once the event has landed in the warehouse.
    relayed_at: Mapped[datetime | None]
    # Set by the notification dispatcher once it has turned the event into notifications (or
    # found that it notifies nobody): every type passes through it.
    notified_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_outbox_events_unrelayed", "event_id", postgresql_where="relayed_at IS NULL"),
        Index("ix_outbox_events_unnotified", "event_id", postgresql_where="notified_at IS NULL"),
        Index("ix_outbox_events_type_occurred", "type", "occurred_at"),
    )


class IdempotencyRecord(Base):
    """The answer given to a request carrying an ``Idempotency-Key``: a retry gets it again."""

    __tablename__ = "idempotency_records"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[UUID] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(SmallInteger)
    response: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
