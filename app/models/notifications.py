"""Notifications: what a user is told (in the app, by email), the templates that say it, what
each user wants to receive, and the admins' broadcasts.

A notification made from a domain event carries the event's id; ``(user_id, source_event_id,
type)`` is unique, so an event processed twice (a worker killed after its commit was sent but
before it heard back, a batch retried) notifies nobody twice. A broadcast's notifications are
unique per ``(user_id, broadcast_id)`` for the same reason.
"""

import enum
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import CheckConstraint, ForeignKey, Index, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, utcnow


class NotificationCategory(enum.StrEnum):
    """What a preference is about: users choose per category, not per template."""

    ACCOUNT = "account"  # welcome, security notices
    LISTINGS = "listings"  # a builder's listing approved, held, delisted
    SALES = "sales"  # a builder's new sale
    PURCHASES = "purchases"  # a buyer's receipt
    PAYOUTS = "payouts"  # payout sent or failed
    BILLING = "billing"  # invoices
    WIDGETS = "widgets"  # widget quota warnings
    OPERATIONS = "operations"  # admins: MCP clients failing their health check
    ANNOUNCEMENTS = "announcements"  # admins' messages and broadcasts


class EmailStatus(enum.StrEnum):
    PENDING = "pending"  # queued, not tried yet
    RETRYING = "retrying"  # a try failed, another is scheduled
    SENT = "sent"  # the SMTP server accepted it (or it was written to the log)
    DEAD = "dead"  # every try failed: the dead-letter state, kept for an admin to look at
    SKIPPED = "skipped"  # the address went away before sending (account deleted)


class BroadcastStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


class Notification(IdMixin, Base):
    """The seed's Notification (id, userId, type, title, message, read, createdAt): one line in a
    user's in-app inbox."""

    __tablename__ = "notifications"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"))
    type: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    # Links and ids the dashboard uses to open what the notification is about.
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    read_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    source_event_id: Mapped[UUID | None]
    broadcast_id: Mapped[UUID | None] = mapped_column(ForeignKey("notification_broadcasts.id"))

    @property
    def read(self) -> bool:
        return self.read_at is not None

    __table_args__ = (
        UniqueConstraint("user_id", "source_event_id", "type", name="uq_notifications_user_event_type"),
        UniqueConstraint("user_id", "broadcast_id", name="uq_notifications_user_broadcast"),
        Index("ix_notifications_user_created", "user_id", "created_at"),
        Index("ix_notifications_user_unread", "user_id", "created_at", postgresql_where="read_at IS NULL"),
    )


class NotificationTemplate(IdMixin, TimestampMixin, Base):
    """The seed's NotificationTemplate (id, type, title, message, variables), plus the HTML body of
    its email. ``title``, ``message`` and ``html`` are Jinja2 templates over ``variables``.

    Seeded from ``app/notifications/templates/*.toml``; ``source_hash`` is the hash of the file
    it was last seeded from, so a changed file updates a template nobody edited, and an admin's
    edit (``edited_by`` set) is never overwritten."""

    __tablename__ = "notification_templates"

    type: Mapped[str] = mapped_column(String(64), unique=True)
    category: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    title: Mapped[str] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text, default="")
    variables: Mapped[list[str]] = mapped_column(JSONB, default=list)
    source_hash: Mapped[str | None] = mapped_column(String(64))
    edited_by: Mapped[UUID | None] = mapped_column(ForeignKey("users.id"))


class NotificationPreference(Base):
    """One user's choice for one category; a missing row means the category's default."""

    __tablename__ = "notification_preferences"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"), primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    in_app: Mapped[bool]
    email: Mapped[bool]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EmailDelivery(IdMixin, Base):
    """One email to send, rendered when it was queued (a later template edit does not change
    mail already on its way), with its tries. Unique per ``(user_id, source_event_id, type)``
    like the notifications: an event mails nobody twice."""

    __tablename__ = "email_deliveries"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"), index=True)
    notification_id: Mapped[UUID | None] = mapped_column(ForeignKey("notifications.id"))
    type: Mapped[str] = mapped_column(String(64))
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(200))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text, default="")
    # The RFC 5322 Message-ID, fixed at queueing: a resend after a lost acknowledgement carries
    # the same id, so a mail client shows one message.
    message_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=EmailStatus.PENDING)
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    source_event_id: Mapped[UUID | None]
    broadcast_id: Mapped[UUID | None] = mapped_column(ForeignKey("notification_broadcasts.id"))

    __table_args__ = (
        UniqueConstraint("user_id", "source_event_id", "type", name="uq_email_deliveries_user_event_type"),
        UniqueConstraint("user_id", "broadcast_id", name="uq_email_deliveries_user_broadcast"),
        CheckConstraint("status IN ('pending', 'retrying', 'sent', 'dead', 'skipped')", name="status"),
        Index("ix_email_deliveries_status", "status", postgresql_where="status IN ('pending', 'retrying')"),
        # The administrators' list of one status, newest first (the dead letters).
        Index("ix_email_deliveries_status_created", "status", "created_at"),
    )


class NotificationBroadcast(IdMixin, Base):
    """An admin's message to every user or to one persona, delivered by the worker in batches;
    ``cursor_user_id`` is the last user reached, so a restarted run carries on after it."""

    __tablename__ = "notification_broadcasts"

    created_by: Mapped[UUID] = mapped_column(ForeignKey("users.id"))
    audience: Mapped[str] = mapped_column(String(32))  # "all" or a persona
    title: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    send_email: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default=BroadcastStatus.QUEUED)
    total: Mapped[int | None]
    delivered: Mapped[int] = mapped_column(default=0)
    cursor_user_id: Mapped[UUID | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("created_by", "idempotency_key", name="uq_notification_broadcasts_idempotency"),
        CheckConstraint("status IN ('queued', 'running', 'done')", name="status"),
    )
