from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Select, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Widget, WidgetUsage


class WidgetRepository:
    async def insert_unless_exists(self, db: AsyncSession, values: dict[str, Any]) -> UUID | None:
        """Insert a widget; None when the owner already used this idempotency key (a concurrent
        retry waits on the unique index, then sees the winner)."""
        stmt = insert(Widget).values(**values).on_conflict_do_nothing().returning(Widget.id)
        return (await db.execute(stmt)).scalar_one_or_none()

    async def get(self, db: AsyncSession, widget_id: UUID, *, for_update: bool = False) -> Widget | None:
        stmt = select(Widget).where(Widget.id == widget_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def by_public_key(self, db: AsyncSession, public_key: str) -> Widget | None:
        return (await db.execute(select(Widget).where(Widget.public_key == public_key))).scalar_one_or_none()

    async def by_idempotency_key(self, db: AsyncSession, user_id: UUID, key: str) -> Widget | None:
        stmt = select(Widget).where(Widget.user_id == user_id, Widget.idempotency_key == key)
        return (await db.execute(stmt)).scalar_one_or_none()

    def of_user(self, user_id: UUID) -> Select[Any]:
        return select(Widget).where(Widget.user_id == user_id)

    async def ids_of_projects(self, db: AsyncSession, project_ids: list[UUID]) -> list[UUID]:
        stmt = select(Widget.id).where(Widget.project_id.in_(project_ids))
        return list((await db.execute(stmt)).scalars())


class WidgetUsageRepository:
    """The monthly message counter of one owner's widgets of one project (``user_id``,
    ``project_id``, ``month``)."""

    async def count_message(self, db: AsyncSession, user_id: UUID, project_id: UUID, month: date) -> int:
        """Add one message to the month's counter and return the new count. The row stays locked
        until the transaction ends: concurrent messages queue here, so two cannot take the last
        slot."""
        stmt = (
            insert(WidgetUsage)
            .values(user_id=user_id, project_id=project_id, month=month, messages=1)
            .on_conflict_do_update(
                index_elements=[WidgetUsage.user_id, WidgetUsage.project_id, WidgetUsage.month],
                set_={"messages": WidgetUsage.messages + 1},
            )
            .returning(WidgetUsage.messages)
        )
        return int((await db.execute(stmt)).scalar_one())

    async def used(self, db: AsyncSession, user_id: UUID, project_id: UUID, month: date) -> int:
        stmt = select(WidgetUsage.messages).where(*self._row(user_id, project_id, month))
        return int((await db.execute(stmt)).scalar_one_or_none() or 0)

    async def mark(self, db: AsyncSession, user_id: UUID, project_id: UUID, month: date, column: str) -> bool:
        """Stamp ``warned_at`` or ``reached_at`` unless already stamped; True when this call did."""
        target = getattr(WidgetUsage, column)
        stmt = (
            update(WidgetUsage)
            .where(*self._row(user_id, project_id, month), target.is_(None))
            .values({column: datetime.now(UTC)})
            .returning(WidgetUsage.month)
        )
        return (await db.execute(stmt)).scalar_one_or_none() is not None

    @staticmethod
    def _row(user_id: UUID, project_id: UUID, month: date) -> tuple[ColumnElement[bool], ...]:
        return (
            WidgetUsage.user_id == user_id,
            WidgetUsage.project_id == project_id,
            WidgetUsage.month == month,
        )


widget_repository = WidgetRepository()
usage_repository = WidgetUsageRepository()
