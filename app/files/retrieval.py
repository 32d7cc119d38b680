"""Knowledge retrieval for chat prompts (interface; the files domain implements it)."""

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.llm.types import Citation


async def retrieve(db: AsyncSession, project_id: UUID, query: str, *, limit: int) -> list[Citation]:
    """The ``limit`` chunks of the project's ready files that best answer ``query``, best first."""
    return []
