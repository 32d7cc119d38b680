from typing import Any
from uuid import UUID

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import LlmModel, LlmProvider, Project


class LlmRepository:
    async def provider(
        self, db: AsyncSession, provider_id: UUID, *, for_update: bool = False
    ) -> LlmProvider | None:
        stmt = select(LlmProvider).where(LlmProvider.id == provider_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def provider_named(self, db: AsyncSession, name: str) -> LlmProvider | None:
        return (await db.execute(select(LlmProvider).where(LlmProvider.name == name))).scalar_one_or_none()

    def providers(self) -> Select[Any]:
        return select(LlmProvider)

    async def model_counts(self, db: AsyncSession, provider_ids: list[UUID]) -> dict[UUID, int]:
        stmt = (
            select(LlmModel.provider_id, func.count())
            .where(LlmModel.provider_id.in_(provider_ids))
            .group_by(LlmModel.provider_id)
        )
        return {provider_id: int(count) for provider_id, count in (await db.execute(stmt)).all()}

    async def model(self, db: AsyncSession, model_id: UUID, *, for_update: bool = False) -> LlmModel | None:
        stmt = select(LlmModel).where(LlmModel.id == model_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def model_with_provider(self, db: AsyncSession, key: str) -> tuple[LlmModel, LlmProvider] | None:
        stmt = (
            select(LlmModel, LlmProvider)
            .join(LlmProvider, LlmProvider.id == LlmModel.provider_id)
            .where(LlmModel.key == key)
        )
        row = (await db.execute(stmt)).one_or_none()
        return None if row is None else (row[0], row[1])

    async def model_keyed(self, db: AsyncSession, key: str) -> LlmModel | None:
        return (await db.execute(select(LlmModel).where(LlmModel.key == key))).scalar_one_or_none()

    async def models_with_providers(
        self, db: AsyncSession, *, usable_only: bool
    ) -> list[tuple[LlmModel, LlmProvider]]:
        stmt = select(LlmModel, LlmProvider).join(LlmProvider, LlmProvider.id == LlmModel.provider_id)
        if usable_only:
            stmt = stmt.where(LlmModel.is_active.is_(True), LlmProvider.is_active.is_(True))
        rows = (await db.execute(stmt.order_by(LlmModel.key))).all()
        return [(row[0], row[1]) for row in rows]

    async def projects_using(self, db: AsyncSession, key: str) -> int:
        stmt = (
            select(func.count()).select_from(Project).where(Project.llm == key, Project.deleted_at.is_(None))
        )
        return int((await db.execute(stmt)).scalar_one())


llm_repository = LlmRepository()
