"""The double-entry ledger: the source of truth for who is owed what.

A transaction's entries sum to zero per currency (checked by a deferred constraint trigger
at commit and by ``bazaar ledger check``). Amounts are signed integer minor units: positive
debits, negative credits.
"""

import enum
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, utcnow


class LedgerTransaction(IdMixin, Base):
    __tablename__ = "ledger_transactions"

    # settlement, refund, payout, payout_reversal, charge
    kind: Mapped[str] = mapped_column(String(32))
    # What caused it, unique per kind: a payment id, a payout id... posting twice is impossible.
    reference: Mapped[str] = mapped_column(String(255))
    memo: Mapped[str] = mapped_column(String(500), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    posted_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())

    __table_args__ = (UniqueConstraint("kind", "reference", name="uq_ledger_transactions_kind_reference"),)


class LedgerEntry(IdMixin, Base):
    __tablename__ = "ledger_entries"

    transaction_id: Mapped[UUID] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    # platform:cash, platform:revenue, builder:<user id>:payable ...
    account: Mapped[str] = mapped_column(String(100))
    # gross, processor_fee, platform_fee, builder_share, payout, refund ...
    leg: Mapped[str] = mapped_column(String(32))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # Denormalised for reports: which builder / project / purchase the entry concerns.
    builder_id: Mapped[UUID | None] = mapped_column(index=True)
    project_id: Mapped[UUID | None] = mapped_column(index=True)
    purchase_id: Mapped[UUID | None] = mapped_column(index=True)
    posted_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())

    __table_args__ = (
        CheckConstraint("amount_minor <> 0", name="not_zero"),
        Index("ix_ledger_entries_account_currency", "account", "currency"),
    )


class PayoutStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FAILED = "failed"


class Payout(IdMixin, TimestampMixin, Base):
    __tablename__ = "payouts"

    builder_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default=PayoutStatus.PENDING)
    provider: Mapped[str] = mapped_column(String(16))
    provider_transfer_id: Mapped[str | None] = mapped_column(String(255))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    attempts: Mapped[int] = mapped_column(default=0)
    paid_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("status IN ('pending', 'paid', 'failed')", name="status"),
    )
