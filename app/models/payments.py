"""Payments through a provider, provider webhooks, and builders' payout accounts."""

import enum
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, utcnow


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"


class Payment(IdMixin, TimestampMixin, Base):
    """Money asked of a user: for a purchase or for an invoice (plans, charges)."""

    __tablename__ = "payments"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"), index=True)
    purchase_id: Mapped[UUID | None] = mapped_column(ForeignKey("purchases.id"), index=True)
    invoice_id: Mapped[UUID | None] = mapped_column(ForeignKey("invoices.id"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    # Checkout session, payment intent or local reference.
    provider_ref: Mapped[str | None] = mapped_column(String(255))
    provider_payment_intent: Mapped[str | None] = mapped_column(String(255), index=True)
    checkout_url: Mapped[str | None] = mapped_column(Text)
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    processor_fee_minor: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16), default=PaymentStatus.PENDING)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    succeeded_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("provider", "provider_ref", name="uq_payments_provider_ref"),
        CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'refunded')", name="status"),
    )


class WebhookEvent(IdMixin, Base):
    """A provider webhook, stored unique by the provider's event id before it is processed."""

    __tablename__ = "webhook_events"

    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    processed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # After a failed attempt the sweeper waits until then (exponential backoff).
    next_attempt_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_webhook_events_provider_event_id"),
        Index("ix_webhook_events_unprocessed", "received_at", postgresql_where="processed_at IS NULL"),
    )


class PayoutAccount(IdMixin, TimestampMixin, Base):
    """Where a builder's money goes: a Stripe Connect Express account (or the local provider)."""

    __tablename__ = "payout_accounts"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"), unique=True)
    provider: Mapped[str] = mapped_column(String(16))
    provider_account_id: Mapped[str] = mapped_column(String(255), unique=True)
    details_submitted: Mapped[bool] = mapped_column(default=False)
    payouts_enabled: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="pending")
