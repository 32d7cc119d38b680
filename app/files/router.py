from typing import Annotated, Any, Literal
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import StreamingResponse

from app.auth.deps import CurrentPrincipal
from app.core.db import DB
from app.core.openapi import errors
from app.core.pagination import Pagination
from app.core.runtime import runtime
from app.core.schemas import Page, PaginationInfo
from app.files.detect import MEDIA_TYPES
from app.files.schemas import FileOut, FileProcessingOut, ProcessRequest
from app.files.service import file_out, file_service, processing_out

router = APIRouter(prefix="/api/files", tags=["files"])

UPLOAD_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "projectId"],
                    "properties": {
                        "projectId": {
                            "type": "string",
                            "format": "uuid",
                            "description": "Send before `file`",
                        },
                        "file": {"type": "string", "format": "binary"},
                        "process": {"type": "boolean", "default": True, "description": "Queue processing"},
                    },
                }
            }
        },
    }
}


@router.post(
    "/upload",
    response_model=FileOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        **errors(401, 403, 404, 413),
        415: {"description": "Not multipart, or a file type that is not supported", **errors()[422]},
    },
    openapi_extra=UPLOAD_FORM,
)
async def upload_file(
    request: Request,
    db: DB,
    principal: CurrentPrincipal,
    project_id: Annotated[
        UUID | None, Query(alias="projectId", description="Instead of the form field")
    ] = None,
) -> FileOut:
    """Upload a knowledge file to your project (admins: any project) as `multipart/form-data`.

    The body is streamed to storage, never held whole. The type is detected from the content:
    PDF, Word (.docx), or UTF-8 text (TXT, Markdown, HTML, CSV, JSON that parses); anything else
    is 415. Larger than the uploader's plan allows (`maxFileBytes`) is 413. With `process`
    (default true) the file is queued for processing at once (`status: queued`)."""
    length = request.headers.get("content-length")
    file = await file_service.upload(
        db,
        runtime().settings,
        principal,
        content_type=request.headers.get("content-type"),
        content_length=int(length) if length and length.isdigit() else None,
        body=request.stream().__aiter__(),
        project_id=project_id,
    )
    return file_out(file)


@router.post(
    "/process",
    response_model=FileProcessingOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(401, 403, 404, 409),
)
async def process_file(body: ProcessRequest, db: DB, principal: CurrentPrincipal) -> FileProcessingOut:
    """Queue (re)processing of a file: extraction, chunking and indexing by the worker. The file
    goes `queued` -> `processing` -> `ready` or `failed` (with `error`). Reprocessing a ready file
    replaces its chunks. A file already queued answers its pending run; one being processed is
    409, unless its run has stalled (no result after `FILE_PROCESSING_TIMEOUT_SECONDS`: its
    worker died), which is then ended `failed` and replaced."""
    return processing_out(
        await file_service.request_processing(db, runtime().settings, principal, body.file_id)
    )


@router.get("/project/{project_id}", response_model=Page[FileOut], responses=errors(401, 404))
async def list_project_files(
    project_id: UUID,
    db: DB,
    principal: CurrentPrincipal,
    page: Pagination,
    status: Literal["uploaded", "queued", "processing", "ready", "failed"] | None = None,
) -> Page[FileOut]:
    """A project's files: its owner, or admins. Sort: `uploadedAt` (default newest first),
    `name`, `size`."""
    items, total = await file_service.list_of_project(db, principal, project_id, page, status)
    return Page(items=items, pagination=PaginationInfo(total=total, page=page.page, limit=page.limit))


@router.get(
    "/{file_id}",
    response_model=FileOut,
    responses={
        **errors(401, 404),
        200: {
            "description": "The file's metadata, or with `download=1` its bytes",
            "content": {media: {} for media in sorted(set(MEDIA_TYPES.values()))},
        },
    },
)
async def get_file(
    file_id: UUID,
    db: DB,
    principal: CurrentPrincipal,
    download: Annotated[bool, Query(description="Stream the file's bytes instead")] = False,
) -> Any:
    """A file's metadata and processing status; with `download=1` its bytes (as an attachment,
    with the detected media type). The project's owner, or admins."""
    file = await file_service.get_visible(db, principal, file_id)
    if not download:
        return file_out(file)
    disposition = f"attachment; filename*=UTF-8''{quote(file.name, safe='')}"
    return StreamingResponse(
        await file_service.download(runtime().settings, file),
        media_type=file.media_type,
        headers={
            "Content-Disposition": disposition,
            "Content-Length": str(file.size),
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.delete("/{file_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 403, 404))
async def delete_file(file_id: UUID, db: DB, principal: CurrentPrincipal) -> None:
    """Delete a file, its chunks and its stored bytes. The project's owner, or admins."""
    await file_service.delete(db, runtime().settings, principal, file_id)
