from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import like_pattern
from app.models import McpClient, McpConnection, McpConnectionStatus


class McpRepository:
    async def get(self, db: AsyncSession, client_id: UUID, *, for_update: bool = False) -> McpClient | None:
        stmt = select(McpClient).where(McpClient.id == client_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def name_taken(self, db: AsyncSession, name: str, *, other_than: UUID | None = None) -> bool:
        stmt = select(McpClient.id).where(func.lower(McpClient.name) == name.lower())
        if other_than is not None:
            stmt = stmt.where(McpClient.id != other_than)
        return (await db.execute(stmt.limit(1))).first() is not None

    def search(
        self,
        *,
        is_active: bool | None,
        connection_type: str | None,
        q: str | None,
    ) -> Select[Any]:
        stmt = select(McpClient)
        if is_active is not None:
            stmt = stmt.where(McpClient.is_active.is_(is_active))
        if connection_type is not None:
            stmt = stmt.where(McpClient.connection_type == connection_type)
        if q:
            pattern = like_pattern(q)
            stmt = stmt.where(or_(McpClient.name.ilike(pattern), McpClient.description.ilike(pattern)))
        return stmt

    async def active_among(self, db: AsyncSession, client_ids: Sequence[UUID]) -> list[McpClient]:
        if not client_ids:
            return []
        stmt = select(McpClient).where(McpClient.id.in_(client_ids), McpClient.is_active.is_(True))
        return list((await db.execute(stmt)).scalars())

    async def all_active(self, db: AsyncSession) -> list[McpClient]:
        stmt = select(McpClient).where(McpClient.is_active.is_(True)).order_by(McpClient.id)
        return list((await db.execute(stmt)).scalars())

    async def latest_connections(
        self, db: AsyncSession, client_ids: Sequence[UUID]
    ) -> dict[UUID, McpConnection]:
        """The most recent check of each client (clients never checked are absent)."""
        if not client_ids:
            return {}
        stmt = (
            select(McpConnection)
            .where(McpConnection.client_id.in_(client_ids))
            .ext(distinct_on(McpConnection.client_id))
            .order_by(McpConnection.client_id, McpConnection.checked_at.desc(), McpConnection.id.desc())
        )
        return {row.client_id: row for row in (await db.execute(stmt)).scalars()}

    async def last_connected_at(self, db: AsyncSession, client_id: UUID) -> Any:
        stmt = select(func.max(McpConnection.checked_at)).where(
            McpConnection.client_id == client_id, McpConnection.status == McpConnectionStatus.CONNECTED
        )
        return (await db.execute(stmt)).scalar_one()

    async def prune_connections(self, db: AsyncSession, client_id: UUID, *, keep: int) -> None:
        """Forget all but the ``keep`` latest checks of a client."""
        newest = (
            select(McpConnection.id)
            .where(McpConnection.client_id == client_id)
            .order_by(McpConnection.checked_at.desc(), McpConnection.id.desc())
            .limit(keep)
        )
        await db.execute(
            delete(McpConnection).where(McpConnection.client_id == client_id, McpConnection.id.not_in(newest))
        )


mcp_repository = McpRepository()
