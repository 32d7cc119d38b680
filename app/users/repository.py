from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import like_pattern
from app.models import (
    Permission,
    Plan,
    RolePermission,
    Subscription,
    SubscriptionStatus,
    User,
    UserRole,
    UserStatus,
)


class UserRepository:
    async def get(
        self, db: AsyncSession, user_id: UUID, *, include_deleted: bool = False, for_update: bool = False
    ) -> User | None:
        user = await db.get(User, user_id, with_for_update=for_update)
        if user is None or (user.deleted_at is not None and not include_deleted):
            return None
        return user

    async def get_by_email(self, db: AsyncSession, email: str) -> User | None:
        stmt = select(User).where(func.lower(User.email) == email.lower(), User.deleted_at.is_(None))
        return (await db.execute(stmt)).scalar_one_or_none()

    async def email_taken(self, db: AsyncSession, email: str, *, excluding: UUID | None = None) -> bool:
        stmt = select(User.id).where(func.lower(User.email) == email.lower(), User.deleted_at.is_(None))
        if excluding is not None:
            stmt = stmt.where(User.id != excluding)
        return (await db.execute(stmt.limit(1))).first() is not None

    def search(
        self,
        *,
        q: str | None,
        persona: str | None,
        status: str | None,
        plan: str | None,
    ) -> Select[Any]:
        stmt = select(User)
        if status is None:
            stmt = stmt.where(User.deleted_at.is_(None))
        else:
            stmt = stmt.where(User.status == status)
        if q:
            pattern = like_pattern(q)
            stmt = stmt.where(or_(User.email.ilike(pattern), User.name.ilike(pattern)))
        if persona:
            stmt = stmt.where(User.id.in_(select(UserRole.user_id).where(UserRole.role == persona)))
        if plan:
            stmt = stmt.where(User.plan == plan)
        return stmt

    async def personas(self, db: AsyncSession, user_id: UUID) -> list[str]:
        stmt = select(UserRole.role).where(UserRole.user_id == user_id).order_by(UserRole.role)
        return list((await db.execute(stmt)).scalars())

    async def personas_for(self, db: AsyncSession, user_ids: Sequence[UUID]) -> dict[UUID, list[str]]:
        result: dict[UUID, list[str]] = {uid: [] for uid in user_ids}
        if not user_ids:
            return result
        stmt = select(UserRole.user_id, UserRole.role).where(UserRole.user_id.in_(user_ids))
        for user_id, role in (await db.execute(stmt.order_by(UserRole.role))).all():
            result[user_id].append(role)
        return result

    async def set_personas(self, db: AsyncSession, user_id: UUID, personas: set[str]) -> None:
        await db.execute(delete(UserRole).where(UserRole.user_id == user_id, UserRole.role.not_in(personas)))
        existing = set(await self.personas(db, user_id))
        for role in sorted(personas - existing):
            db.add(UserRole(user_id=user_id, role=role))
        await db.flush()

    async def permissions_of(self, db: AsyncSession, persona: str) -> list[str]:
        stmt = (
            select(Permission.name)
            .join(RolePermission, RolePermission.permission_id == Permission.id)
            .where(RolePermission.role == persona)
            .order_by(Permission.name)
        )
        return list((await db.execute(stmt)).scalars())

    async def get_plan(self, db: AsyncSession, code: str) -> Plan | None:
        return await db.get(Plan, code)

    async def list_plans(self, db: AsyncSession) -> list[Plan]:
        return list((await db.execute(select(Plan).order_by(Plan.price_minor))).scalars())

    async def active_subscription(self, db: AsyncSession, user_id: UUID) -> Subscription | None:
        stmt = select(Subscription).where(
            Subscription.user_id == user_id, Subscription.status == SubscriptionStatus.ACTIVE
        )
        return (await db.execute(stmt)).scalar_one_or_none()

    async def end_subscription(self, db: AsyncSession, subscription: Subscription, at: datetime) -> None:
        subscription.status = SubscriptionStatus.ENDED
        subscription.end_date = at
        await db.flush()

    async def count_active(self, db: AsyncSession) -> int:
        stmt = select(func.count()).select_from(User).where(User.status == UserStatus.ACTIVE)
        return int((await db.execute(stmt)).scalar_one())


user_repository = UserRepository()
