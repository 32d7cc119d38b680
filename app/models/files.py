"""Knowledge files of a project, their processing runs and the searchable chunks they yield."""

import enum
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.schema import Computed

from app.models.base import Base, IdMixin, utcnow


class FileStatus(enum.StrEnum):
    UPLOADED = "uploaded"
    QUEUED = "queued"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class KnowledgeFile(IdMixin, Base):
    """The seed's File: an uploaded document. ``kind`` is detected from the content."""

    __tablename__ = "files"

    project_id: Mapped[UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    uploader_id: Mapped[UUID] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(10))
    media_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), default=FileStatus.UPLOADED)
    error: Mapped[str | None] = mapped_column(Text)
    chunk_count: Mapped[int] = mapped_column(default=0)
    char_count: Mapped[int] = mapped_column(BigInteger, default=0)
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    processed_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now(), onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("status IN ('uploaded', 'queued', 'processing', 'ready', 'failed')", name="status"),
        CheckConstraint("kind IN ('pdf', 'docx', 'txt', 'md', 'html', 'csv', 'json')", name="kind"),
        CheckConstraint("size >= 0", name="size_not_negative"),
    )


class FileProcessing(IdMixin, Base):
    """The seed's FileProcessing: one run of extraction and indexing of a file."""

    __tablename__ = "file_processings"

    file_id: Mapped[UUID] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20), default=FileStatus.QUEUED)
    result: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    started_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("status IN ('queued', 'processing', 'ready', 'failed')", name="status"),
    )


class KnowledgeChunk(IdMixin, Base):
    """A passage of a file's text, indexed for full-text retrieval."""

    __tablename__ = "knowledge_chunks"

    file_id: Mapped[UUID] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    project_id: Mapped[UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int]
    content: Mapped[str] = mapped_column(Text)
    search: Mapped[str] = mapped_column(
        TSVECTOR, Computed("to_tsvector('english', content)", persisted=True), deferred=True
    )

    __table_args__ = (
        UniqueConstraint("file_id", "ordinal", name="uq_knowledge_chunks_file_ordinal"),
        Index("ix_knowledge_chunks_search", "search", postgresql_using="gin"),
    )
