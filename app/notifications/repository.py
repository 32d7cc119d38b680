"""Queries of the notifications' API: a user's inbox, their preferences and the stored templates
(the answers remembered for an ``Idempotency-Key`` are ``app.core.idempotency``'s)."""

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Notification, NotificationPreference, NotificationTemplate, User
from app.notifications.templates import TemplateSpec


class NotificationRepository:
    def inbox(self, user_id: UUID, *, unread_only: bool) -> Select[Any]:
        """A user's notifications, or only their unread ones."""
        stmt = select(Notification).where(Notification.user_id == user_id)
        if unread_only:
            stmt = stmt.where(Notification.read_at.is_(None))
        return stmt

    async def unread_count(self, db: AsyncSession, user_id: UUID) -> int:
        stmt = select(func.count()).where(Notification.user_id == user_id, Notification.read_at.is_(None))
        return int((await db.execute(stmt)).scalar_one())

    async def get_of_user(
        self, db: AsyncSession, notification_id: UUID, user_id: UUID, *, for_update: bool = False
    ) -> Notification | None:
        stmt = select(Notification).where(Notification.id == notification_id, Notification.user_id == user_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def mark_all_read(self, db: AsyncSession, user_id: UUID, at: datetime) -> list[UUID]:
        """Stamp every unread notification of the user; the ids stamped now (a concurrent mark-all
        waits on the rows, then finds them read and stamps nothing)."""
        stmt = (
            update(Notification)
            .where(Notification.user_id == user_id, Notification.read_at.is_(None))
            .values(read_at=at)
            .returning(Notification.id)
        )
        return sorted((await db.execute(stmt)).scalars())


class PreferenceRepository:
    async def lock_user(self, db: AsyncSession, user_id: UUID) -> None:
        """Serialise changes of one user's preferences until the transaction ends (the user's row,
        ``FOR NO KEY UPDATE``: the rows that reference the user are still inserted meanwhile)."""
        await db.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))

    async def of_user(self, db: AsyncSession, user_id: UUID) -> dict[str, NotificationPreference]:
        stmt = select(NotificationPreference).where(NotificationPreference.user_id == user_id)
        return {pref.category: pref for pref in (await db.execute(stmt)).scalars()}

    async def upsert(self, db: AsyncSession, user_id: UUID, rows: dict[str, tuple[bool, bool]]) -> None:
        """Store ``{category: (in_app, email)}`` for the user, replacing what was there."""
        if not rows:
            return
        stmt = insert(NotificationPreference).values(
            [
                {"user_id": user_id, "category": category, "in_app": in_app, "email": email}
                for category, (in_app, email) in rows.items()
            ]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[NotificationPreference.user_id, NotificationPreference.category],
            set_={"in_app": stmt.excluded.in_app, "email": stmt.excluded.email, "updated_at": func.now()},
        )
        await db.execute(stmt)


class TemplateRepository:
    async def all(self, db: AsyncSession) -> dict[str, NotificationTemplate]:
        return {row.type: row for row in (await db.execute(select(NotificationTemplate))).scalars()}

    async def get(
        self, db: AsyncSession, template_type: str, *, for_update: bool = False
    ) -> NotificationTemplate | None:
        stmt = select(NotificationTemplate).where(NotificationTemplate.type == template_type)
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def store_shipped(self, db: AsyncSession, spec: TemplateSpec) -> NotificationTemplate:
        """The stored row of a shipped template, inserted from its file unless the seeding (or a
        concurrent edit) stored it first; locked until the transaction ends."""
        await db.execute(
            insert(NotificationTemplate)
            .values(
                type=spec.type,
                category=spec.category,
                description=spec.description,
                variables=list(spec.variables),
                title=spec.title,
                message=spec.message,
                html=spec.html,
                source_hash=spec.source_hash,
            )
            .on_conflict_do_nothing(index_elements=[NotificationTemplate.type])
        )
        row = await self.get(db, spec.type, for_update=True)
        assert row is not None
        return row


notification_repository = NotificationRepository()
preference_repository = PreferenceRepository()
template_repository = TemplateRepository()
