"""Async SQLAlchemy engine and the one-commit-per-request session.

``get_db`` is the only place a request's transaction is committed. Services ``flush()`` at
most. Work that must only happen once the change is durable (cache invalidation, enqueueing
side effects outside Postgres) is registered with ``after_commit`` and runs right after the
commit, before the response is sent.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.core.config import Settings

AfterCommit = Callable[[], Awaitable[None]]

_engine: AsyncEngine | None = None
_sessionmaker: async_sessionmaker[AsyncSession] | None = None


def async_url(url: str) -> str:
    """Normalise any Postgres URL to the psycopg 3 async driver."""
    for prefix in ("postgresql+psycopg://", "postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]}")


def init_engine(settings: Settings) -> AsyncEngine:
    global _engine, _sessionmaker
    if settings.database_url is None:
        raise RuntimeError("DATABASE_URL is not set (bazaar dev starts the embedded Postgres)")
    _engine = create_async_engine(
        async_url(settings.database_url),
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_pre_ping=True,
    )
    _sessionmaker = async_sessionmaker(_engine, expire_on_commit=False)
    return _engine


async def dispose_engine() -> None:
    global _engine, _sessionmaker
    if _engine is not None:
        await _engine.dispose()
    _engine = None
    _sessionmaker = None


def get_engine() -> AsyncEngine:
    if _engine is None:
        raise RuntimeError("database engine is not initialised")
    return _engine


def sessionmaker() -> async_sessionmaker[AsyncSession]:
    if _sessionmaker is None:
        raise RuntimeError("database engine is not initialised")
    return _sessionmaker


def after_commit(db: AsyncSession, callback: AfterCommit) -> None:
    db.info.setdefault("after_commit", []).append(callback)


async def commit(db: AsyncSession) -> None:
    """Commit and run the callbacks registered for this transaction."""
    await db.commit()
    callbacks: list[AfterCommit] = db.info.pop("after_commit", [])
    for callback in callbacks:
        await callback()


async def get_db() -> AsyncIterator[AsyncSession]:
    async with sessionmaker()() as db:
        try:
            yield db
        except BaseException:
            await db.rollback()
            db.info.pop("after_commit", None)
            raise
        else:
            await commit(db)


# scope="function": the commit happens before the response is sent, so a failed commit is a
# failed request rather than a 200 for a change that never landed.
DB = Annotated[AsyncSession, Depends(get_db, scope="function")]
