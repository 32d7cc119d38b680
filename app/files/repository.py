from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import FileProcessing, FileStatus, KnowledgeChunk, KnowledgeFile


class FileRepository:
    async def get(self, db: AsyncSession, file_id: UUID, *, for_update: bool = False) -> KnowledgeFile | None:
        stmt = select(KnowledgeFile).where(KnowledgeFile.id == file_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    def of_project(self, project_id: UUID, status: str | None) -> Select[Any]:
        stmt = select(KnowledgeFile).where(KnowledgeFile.project_id == project_id)
        if status is not None:
            stmt = stmt.where(KnowledgeFile.status == status)
        return stmt

    async def of_projects(self, db: AsyncSession, project_ids: Sequence[UUID]) -> list[KnowledgeFile]:
        if not project_ids:
            return []
        stmt = (
            select(KnowledgeFile)
            .where(KnowledgeFile.project_id.in_(project_ids))
            .order_by(KnowledgeFile.uploaded_at, KnowledgeFile.id)
        )
        return list((await db.execute(stmt)).scalars())

    async def processing(
        self, db: AsyncSession, processing_id: UUID, *, for_update: bool = False
    ) -> FileProcessing | None:
        stmt = select(FileProcessing).where(FileProcessing.id == processing_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def latest_processing(
        self, db: AsyncSession, file_id: UUID, *, for_update: bool = False
    ) -> FileProcessing | None:
        stmt = (
            select(FileProcessing)
            .where(FileProcessing.file_id == file_id)
            .order_by(FileProcessing.created_at.desc(), FileProcessing.id.desc())
            .limit(1)
        )
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def run_with_file(
        self, db: AsyncSession, processing_id: UUID
    ) -> tuple[FileProcessing, KnowledgeFile] | None:
        """A processing run and its file, both locked: the file's row first, as every writer of
        either takes them (so the worker, a request and the sweep cannot deadlock)."""
        file_id = (
            await db.execute(select(FileProcessing.file_id).where(FileProcessing.id == processing_id))
        ).scalar_one_or_none()
        file = await self.get(db, file_id, for_update=True) if file_id is not None else None
        processing = await self.processing(db, processing_id, for_update=True) if file else None
        return (processing, file) if processing is not None and file is not None else None

    async def runs_processing_since_before(self, db: AsyncSession, cutoff: datetime) -> list[UUID]:
        stmt = (
            select(FileProcessing.id)
            .where(FileProcessing.status == FileStatus.PROCESSING, FileProcessing.started_at < cutoff)
            .order_by(FileProcessing.started_at)
        )
        return list((await db.execute(stmt)).scalars())

    async def replace_chunks(
        self, db: AsyncSession, file: KnowledgeFile, chunks: Sequence[str], *, batch: int = 500
    ) -> None:
        await db.execute(delete(KnowledgeChunk).where(KnowledgeChunk.file_id == file.id))
        rows = [
            {"file_id": file.id, "project_id": file.project_id, "ordinal": i, "content": content}
            for i, content in enumerate(chunks)
        ]
        for start in range(0, len(rows), batch):
            await db.execute(insert(KnowledgeChunk), rows[start : start + batch])

    async def best_chunks(
        self, db: AsyncSession, project_id: UUID, query: str, *, limit: int
    ) -> list[dict[str, Any]]:
        """The ``limit`` ready chunks of the project that best match ``query`` (see retrieval)."""
        rows = await db.execute(_BEST_CHUNKS, {"project_id": project_id, "query": query, "limit": limit})
        return [dict(row._mapping) for row in rows]


# Recall first: a chunk matches when it holds ANY of the question's lexemes (an AND of every
# word of a natural question rarely matches anything); the GIN index on ``search`` finds these
# candidates, and each is read once. Precision comes from the score, in two stages:
#   1. the sum of the inverse document frequencies of the lexemes a candidate holds, so that
#      "refund" counts for more than "kayak". A lexeme's document frequency is counted among
#      the candidates (they are every chunk holding any of the lexemes); the number of chunks
#      is the ready files' ``chunk_count``;
#   2. for the ``10 * limit`` best by that sum: times 1 + ts_rank_cd (normalised by the number
#      of unique words, 8), a bonus for the words standing close together in a short passage.
# Each lexeme is quoted for tsquery input (quotes doubled, backslashes escaped) so no word of
# the question changes its syntax; a question of stop words only matches nothing.
_BEST_CHUNKS = text(
    r"""
WITH terms AS (
    SELECT DISTINCT
        ('''' || replace(replace(t.lexeme, E'\\', E'\\\\'), '''', '''''') || '''')::tsquery AS query
    FROM unnest(to_tsvector('english', :query)) AS t
),
any_term AS (SELECT string_agg(query::text, ' | ')::tsquery AS query FROM terms),
candidates AS MATERIALIZED (
    SELECT c.id, c.file_id, c.ordinal, c.search
    FROM knowledge_chunks c JOIN files f ON f.id = c.file_id
    WHERE c.project_id = :project_id AND f.status = 'STATUS'
        AND c.search @@ (SELECT query FROM any_term)
),
total AS (
    SELECT coalesce(sum(f.chunk_count), 0) AS n
    FROM files f WHERE f.project_id = :project_id AND f.status = 'STATUS'
),
weights AS MATERIALIZED (
    SELECT terms.query, ln(1 + (greatest(total.n - df.n, 0) + 0.5) / (df.n + 0.5)) AS idf
    FROM terms
    CROSS JOIN total
    CROSS JOIN LATERAL (SELECT count(*) AS n FROM candidates WHERE candidates.search @@ terms.query) AS df
),
weighed AS (
    SELECT candidates.*,
           (SELECT sum(weights.idf) FROM weights WHERE candidates.search @@ weights.query) AS idf_sum
    FROM candidates
    ORDER BY idf_sum DESC, candidates.file_id, candidates.ordinal
    LIMIT 10 * :limit
),
best AS (
    SELECT weighed.id, weighed.file_id, weighed.ordinal,
           weighed.idf_sum * (1 + ts_rank_cd(weighed.search, (SELECT query FROM any_term), 8)) AS score
    FROM weighed
    ORDER BY score DESC, weighed.file_id, weighed.ordinal
    LIMIT :limit
)
SELECT c.id AS chunk_id, c.file_id, f.name AS file_name, c.ordinal, c.content, best.score
FROM best
JOIN knowledge_chunks c ON c.id = best.id
JOIN files f ON f.id = c.file_id
ORDER BY best.score DESC, c.file_id, c.ordinal
""".replace("STATUS", FileStatus.READY.value)
)


file_repository = FileRepository()
