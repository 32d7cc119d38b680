"""Listings on the marketplace, their moderation trail, and purchases."""

import enum
from datetime import datetime
from uuid import UUID

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.schema import Computed

from app.models.base import Base, IdMixin, TimestampMixin, utcnow


class ListingStatus(enum.StrEnum):
    PENDING_REVIEW = "pending_review"
    ACTIVE = "active"
    HELD = "held"
    DELISTED = "delisted"


class Listing(IdMixin, TimestampMixin, Base):
    """A project offered on the marketplace (one listing per project)."""

    __tablename__ = "listings"

    project_id: Mapped[UUID] = mapped_column(ForeignKey("projects.id"), unique=True)
    builder_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(40)), default=list)
    price_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    published_at: Mapped[datetime | None]
    purchase_count: Mapped[int] = mapped_column(default=0)
    search: Mapped[str] = mapped_column(
        TSVECTOR,
        Computed(
            "setweight(to_tsvector('english', coalesce(title, '')), 'A') || "
            "setweight(to_tsvector('english', coalesce(category, '')), 'B') || "
            "setweight(to_tsvector('english', coalesce(description, '')), 'C')",
            persisted=True,
        ),
        deferred=True,
    )

    __table_args__ = (
        CheckConstraint("price_minor >= 0", name="price_not_negative"),
        CheckConstraint("status IN ('pending_review', 'active', 'held', 'delisted')", name="status"),
        Index("ix_listings_search", "search", postgresql_using="gin"),
        Index("ix_listings_status_published", "status", "published_at"),
    )


class ListingAudit(IdMixin, Base):
    """Every status change of a listing, with who did it and why."""

    __tablename__ = "listing_audit"

    listing_id: Mapped[UUID] = mapped_column(ForeignKey("listings.id", ondelete="CASCADE"), index=True)
    actor_id: Mapped[UUID | None]
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())


class PurchaseStatus(enum.StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    REFUNDED = "refunded"


class Purchase(IdMixin, TimestampMixin, Base):
    __tablename__ = "purchases"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"), index=True)
    listing_id: Mapped[UUID] = mapped_column(ForeignKey("listings.id"), index=True)
    project_id: Mapped[UUID] = mapped_column(ForeignKey("projects.id"), index=True)
    builder_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"), index=True)
    amount_minor: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default=PurchaseStatus.PENDING)
    provider: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    # Fee rate in force when bought: the split is computed with it at settlement.
    platform_fee_bps: Mapped[int]
    completed_at: Mapped[datetime | None]
    refunded_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_purchases_user_idempotency_key"),
        # One live purchase of a listing per user: parallel attempts collapse into one.
        Index(
            "uq_purchases_live_per_listing",
            "user_id",
            "listing_id",
            unique=True,
            postgresql_where="status IN ('pending', 'completed')",
        ),
        CheckConstraint("amount_minor >= 0", name="amount_not_negative"),
        CheckConstraint("status IN ('pending', 'completed', 'failed', 'refunded')", name="status"),
    )
