from typing import Any
from uuid import UUID

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import like_pattern
from app.models import Project


class ProjectRepository:
    async def get(self, db: AsyncSession, project_id: UUID, *, for_update: bool = False) -> Project | None:
        stmt = select(Project).where(Project.id == project_id, Project.deleted_at.is_(None))
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    def search(
        self,
        *,
        owner_id: UUID | None,
        status: str | None,
        q: str | None,
    ) -> Select[Any]:
        stmt = select(Project).where(Project.deleted_at.is_(None))
        if owner_id is not None:
            stmt = stmt.where(Project.user_id == owner_id)
        if status is not None:
            stmt = stmt.where(Project.status == status)
        if q:
            pattern = like_pattern(q)
            stmt = stmt.where(or_(Project.name.ilike(pattern), Project.description.ilike(pattern)))
        return stmt

    async def using_mcp_client(self, db: AsyncSession, client_id: str) -> list[Project]:
        """Live projects whose ``mcp_servers`` hold ``client_id`` (locked for the change)."""
        stmt = (
            select(Project)
            .where(Project.deleted_at.is_(None), Project.mcp_servers.contains([client_id]))
            .order_by(Project.id)
            .with_for_update()
        )
        return list((await db.execute(stmt)).scalars())

    async def count_owned(self, db: AsyncSession, owner_id: UUID) -> int:
        stmt = (
            select(func.count())
            .select_from(Project)
            .where(Project.user_id == owner_id, Project.deleted_at.is_(None), Project.status != "archived")
        )
        return int((await db.execute(stmt)).scalar_one())


project_repository = ProjectRepository()
