from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import ConfigDict, Field

from app.core.schemas import InputSchema, Schema


class FileOut(Schema):
    """The seed's File, with what processing made of it.

    ``type`` is the media type detected from the content, ``kind`` its short name (``pdf``,
    ``docx``, ``txt``, ``md``, ``html``, ``csv``, ``json``). ``url`` downloads the bytes."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0193a1b2-0000-7000-8000-000000000001",
                    "name": "returns-policy.pdf",
                    "size": 48213,
                    "type": "application/pdf",
                    "kind": "pdf",
                    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                    "url": "/api/files/0193a1b2-0000-7000-8000-000000000001?download=1",
                    "projectId": "0193a1b2-0000-7000-8000-0000000000aa",
                    "uploadedAt": "2026-11-26T10:00:00Z",
                    "status": "ready",
                    "error": None,
                    "chunkCount": 12,
                    "processedAt": "2026-11-26T10:00:03Z",
                }
            ]
        }
    )

    id: UUID
    name: str
    size: int
    type: str
    kind: str
    sha256: str
    url: str
    project_id: UUID
    uploaded_at: datetime
    status: str = Field(description="uploaded, queued, processing, ready or failed")
    error: str | None = Field(description="Why processing failed, for a person")
    chunk_count: int
    processed_at: datetime | None


class FileSummary(Schema):
    """A knowledge file as listed on its project."""

    id: UUID
    name: str
    size: int
    type: str
    status: str


class FileProcessingOut(Schema):
    """The seed's FileProcessing: one run of extraction and indexing."""

    id: UUID
    file_id: UUID
    status: str = Field(description="queued, processing, ready or failed")
    result: dict[str, Any] = Field(
        description="`{chunks, chars}` when ready, `{reason}` when failed; while queued, `{retryOf}` "
        "(the run it replaces) when its worker died and the run was queued again automatically"
    )
    processed_at: datetime | None
    created_at: datetime


class ProcessRequest(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"fileId": "0193a1b2-0000-7000-8000-000000000001"}]}
    )

    file_id: UUID
