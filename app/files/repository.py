from collections.abc import Sequence
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

    async def latest_processing(self, db: AsyncSession, file_id: UUID) -> FileProcessing | None:
        stmt = (
            select(FileProcessing)
            .where(FileProcessing.file_id == file_id)
            .order_by(FileProcessing.created_at.desc(), FileProcessing.id.desc())
            .limit(1)
        )
        return (await db.execute(stmt)).scalar_one_or_none()

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
# word of a natural question rarely matches anything). Precision comes from the score: the sum
# of the inverse document frequencies (within the project's ready chunks) of the lexemes the
# chunk holds, so "refund" counts for more than "product", times a small proximity and density
# bonus from ts_rank_cd. The IDF weights are computed once per query (MATERIALIZED: inlined,
# they were recomputed for every candidate chunk). Each lexeme is quoted for tsquery input
# (quotes doubled, backslashes escaped) so no word of the question changes its syntax.
_READY = f"""
    FROM knowledge_chunks c JOIN files f ON f.id = c.file_id
    WHERE c.project_id = :project_id AND f.status = '{FileStatus.READY.value}'"""
_BEST_CHUNKS = text(
    r"""
WITH terms AS (
    SELECT DISTINCT
        ('''' || replace(replace(t.lexeme, E'\\', E'\\\\'), '''', '''''') || '''')::tsquery AS query
    FROM unnest(to_tsvector('english', :query)) AS t
),
total AS MATERIALIZED (SELECT count(*) AS n READY),
weights AS MATERIALIZED (
    SELECT terms.query, ln(1 + (total.n - df.n + 0.5) / (df.n + 0.5)) AS idf
    FROM terms
    CROSS JOIN total
    CROSS JOIN LATERAL (SELECT count(*) AS n READY AND c.search @@ terms.query) AS df
),
any_term AS (SELECT string_agg(query::text, ' | ')::tsquery AS query FROM terms)
SELECT c.id AS chunk_id, c.file_id, f.name AS file_name, c.ordinal, c.content,
       matched.idf_sum * (1 + ts_rank_cd(c.search, (SELECT query FROM any_term), 1)) AS score
FROM knowledge_chunks c
JOIN files f ON f.id = c.file_id
CROSS JOIN LATERAL (
    SELECT sum(weights.idf) AS idf_sum FROM weights WHERE c.search @@ weights.query
) AS matched
WHERE c.project_id = :project_id AND f.status = 'STATUS'
    AND c.search @@ (SELECT query FROM any_term)
ORDER BY score DESC, c.file_id, c.ordinal
LIMIT :limit
""".replace("READY", _READY).replace("STATUS", FileStatus.READY.value)
)


file_repository = FileRepository()
