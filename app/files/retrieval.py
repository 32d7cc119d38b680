"""Knowledge retrieval for chat prompts: the chunks of a project's ready files that best answer
a question, by Postgres full-text search (any of the question's words may match; rarer words
weigh more; see ``repository._BEST_CHUNKS``)."""

from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.files.repository import file_repository
from app.llm.types import Citation

MAX_QUERY_CHARS = 2000


async def retrieve(db: AsyncSession, project_id: UUID, query: str, *, limit: int) -> list[Citation]:
    """The ``limit`` chunks of the project's ready files that best answer ``query``, best first."""
    query = query.replace("\x00", " ")[:MAX_QUERY_CHARS].strip()
    if not query or limit <= 0:
        return []
    rows = await file_repository.best_chunks(db, project_id, query, limit=limit)
    return [
        Citation(
            chunk_id=str(row["chunk_id"]),
            file_id=str(row["file_id"]),
            file_name=row["file_name"],
            ordinal=row["ordinal"],
            text=row["content"],
            score=round(float(row["score"]), 6),
        )
        for row in rows
    ]
