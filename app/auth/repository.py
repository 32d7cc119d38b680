from datetime import datetime
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AuthSession, RefreshToken, User


class SessionRepository:
    async def get_with_user(self, db: AsyncSession, session_id: UUID) -> tuple[AuthSession, User] | None:
        stmt = (
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.id == session_id)
        )
        row = (await db.execute(stmt)).first()
        return (row[0], row[1]) if row else None

    async def get(self, db: AsyncSession, session_id: UUID) -> AuthSession | None:
        return await db.get(AuthSession, session_id)

    async def refresh_token_for_update(self, db: AsyncSession, token_hash: str) -> RefreshToken | None:
        # Row lock: two concurrent refreshes with the same token serialise; the second sees it
        # rotated and is treated as reuse.
        stmt = select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def live_session_ids(self, db: AsyncSession, user_id: UUID) -> list[UUID]:
        stmt = select(AuthSession.id).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        return list((await db.execute(stmt)).scalars())

    async def revoke_user_sessions(
        self, db: AsyncSession, user_id: UUID, at: datetime, reason: str
    ) -> list[UUID]:
        stmt = (
            update(AuthSession)
            .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=at, revoked_reason=reason)
            .returning(AuthSession.id)
        )
        return list((await db.execute(stmt)).scalars())


session_repository = SessionRepository()
