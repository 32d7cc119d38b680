"""All SQLAlchemy models, re-exported so Alembic and the domains import one place."""

from app.models.base import Base
from app.models.event import OutboxEvent
from app.models.project import Project, ProjectStatus
from app.models.session import AuthSession, RefreshToken
from app.models.user import (
    Permission,
    Persona,
    Plan,
    Role,
    RolePermission,
    Subscription,
    SubscriptionStatus,
    User,
    UserRole,
    UserStatus,
)

__all__ = [
    "AuthSession",
    "Base",
    "OutboxEvent",
    "Permission",
    "Persona",
    "Plan",
    "Project",
    "ProjectStatus",
    "RefreshToken",
    "Role",
    "RolePermission",
    "Subscription",
    "SubscriptionStatus",
    "User",
    "UserRole",
    "UserStatus",
]
