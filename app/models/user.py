"""Users, personas (roles), permissions as data, plans and subscriptions."""

import enum
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin, utcnow


class Persona(enum.StrEnum):
    SUPER_ADMIN = "super_admin"
    BUILDER = "builder"
    END_USER = "end_user"


class UserStatus(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(Text)
    # The persona a fresh login starts in; the token carries the active one.
    default_persona: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=UserStatus.ACTIVE)
    plan: Mapped[str] = mapped_column(ForeignKey("plans.code"), default="free")
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    last_login_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]

    __table_args__ = (
        # Unique among users that are not deleted: a deleted account frees its email.
        Index(
            "uq_users_email_live",
            func.lower(email),
            unique=True,
            postgresql_where="deleted_at IS NULL",
        ),
        CheckConstraint("status IN ('active', 'suspended', 'deleted')", name="status"),
    )


class Role(Base):
    """One row per persona; a user holding a role holds that persona."""

    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")


class Permission(Base):
    __tablename__ = "permissions"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")


class RolePermission(Base):
    __tablename__ = "role_permissions"

    role: Mapped[str] = mapped_column(ForeignKey("roles.name", ondelete="CASCADE"), primary_key=True)
    permission_id: Mapped[int] = mapped_column(
        ForeignKey("permissions.id", ondelete="CASCADE"), primary_key=True
    )


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(ForeignKey("roles.name"), primary_key=True)
    granted_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())


class Plan(Base):
    """Plans and their limits are data, so admins can tune them without a deploy."""

    __tablename__ = "plans"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    price_minor: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3), default="usd")
    limits: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class SubscriptionStatus(enum.StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class Subscription(IdMixin, TimestampMixin, Base):
    __tablename__ = "subscriptions"

    user_id: Mapped[UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    plan: Mapped[str] = mapped_column(ForeignKey("plans.code"))
    status: Mapped[str] = mapped_column(String(16), default=SubscriptionStatus.ACTIVE)
    start_date: Mapped[datetime] = mapped_column(default=utcnow)
    end_date: Mapped[datetime | None]

    __table_args__ = (
        Index(
            "uq_subscriptions_one_active",
            "user_id",
            unique=True,
            postgresql_where="status = 'active'",
        ),
    )
