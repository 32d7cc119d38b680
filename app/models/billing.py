"""Invoices with gapless numbers and their line items."""

import enum
from datetime import datetime
from uuid import UUID

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin


class InvoiceStatus(enum.StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"


class Invoice(IdMixin, TimestampMixin, Base):
    __tablename__ = "invoices"

    # Assigned when the invoice is issued (drafts have none), from ``invoice_counters``.
    number: Mapped[str | None] = mapped_column(String(32), unique=True)
    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(8), default=InvoiceStatus.DRAFT)
    currency: Mapped[str] = mapped_column(String(3))
    subtotal_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    tax_rate_bps: Mapped[int] = mapped_column(default=0)
    tax_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    total_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    customer_name: Mapped[str] = mapped_column(String(200), default="")
    customer_email: Mapped[str] = mapped_column(String(320), default="")
    # purchase, plan, charge
    kind: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str | None] = mapped_column(String(255))
    memo: Mapped[str] = mapped_column(Text, default="")
    issued_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    voided_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("status IN ('draft', 'open', 'paid', 'void')", name="status"),
        CheckConstraint("total_minor = subtotal_minor + tax_minor", name="total_adds_up"),
    )


class InvoiceLine(IdMixin, Base):
    __tablename__ = "invoice_lines"

    invoice_id: Mapped[UUID] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    position: Mapped[int]
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[int] = mapped_column(default=1)
    unit_amount_minor: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("amount_minor = quantity * unit_amount_minor", name="amount_adds_up"),
    )


class InvoiceCounter(Base):
    """The last number used per series (one row per year). Issuing locks the row, so numbers
    are sequential without gaps even under concurrency; a rolled-back issue frees its number."""

    __tablename__ = "invoice_counters"

    series: Mapped[str] = mapped_column(String(16), primary_key=True)
    last_number: Mapped[int] = mapped_column(default=0)
