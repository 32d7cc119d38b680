"""Knowledge files: streamed upload with content sniffing and plan limits, processing into
searchable chunks by the worker, download and deletion. Access follows the project: its owner,
or administrators; anyone else is told the file does not exist."""

import hashlib
import logging
import re
import unicodedata
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.permissions import Perm
from app.core.config import Settings
from app.core.db import after_commit, commit, sessionmaker
from app.core.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from app.core.events import record_event
from app.core.ids import uuid7
from app.core.pagination import PageParams, apply_sort, paginate
from app.core.principal import Principal
from app.core.runtime import runtime
from app.files.chunking import chunk_text
from app.files.detect import ContentSniffer, Detected, UnsupportedContent
from app.files.extract import ExtractionFailed, extract_text
from app.files.isolation import ExtractionLimits, Extractor, extract_in_child
from app.files.multipart import FormTooLarge, MalformedForm, MultipartReader
from app.files.repository import file_repository
from app.files.schemas import FileOut, FileProcessingOut, FileSummary
from app.files.storage import FileStorage, StorageError, storage_for
from app.models import FileProcessing, FileStatus, KnowledgeFile, Project
from app.projects.service import project_service
from app.users.service import user_service
from app.worker.queue import queue

logger = logging.getLogger("bazaar.files")

PROCESS_FILE_TASK = "files.process_file"
STALLED_REASON = "Processing did not finish (its worker stopped)"
# Form fields other than the file are tiny; the rest of a multipart body is its boundaries.
_FIELD_MAX_BYTES = 1024
_FORM_OVERHEAD_BYTES = 64 * 1024
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_SORTABLE = {"uploadedAt": KnowledgeFile.uploaded_at, "name": KnowledgeFile.name, "size": KnowledgeFile.size}


def file_out(file: KnowledgeFile) -> FileOut:
    return FileOut(
        id=file.id,
        name=file.name,
        size=file.size,
        type=file.media_type,
        kind=file.kind,
        sha256=file.sha256,
        url=f"/api/files/{file.id}?download=1",
        project_id=file.project_id,
        uploaded_at=file.uploaded_at,
        status=file.status,
        error=file.error,
        chunk_count=file.chunk_count,
        processed_at=file.processed_at,
    )


def processing_out(processing: FileProcessing) -> FileProcessingOut:
    return FileProcessingOut.model_validate(processing)


def clean_file_name(raw: str | None) -> str:
    """The last path segment of the client's name, without control characters, ≤ 255 chars."""
    name = re.split(r"[\\/]", raw or "")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    return name[:255] or "untitled"


class _StoredObject:
    def __init__(self, key: str, size: int, sha256: str, detected: Detected, name: str) -> None:
        self.key, self.size, self.sha256, self.detected, self.name = key, size, sha256, detected, name


class FileService:
    def __init__(self) -> None:
        # What turns a file's bytes into text, in the helper process (tests swap in hostile ones).
        self.extractor: Extractor = extract_text

    # --- access ---------------------------------------------------------------------------------

    async def _project_for_change(self, db: AsyncSession, actor: Principal, project_id: UUID) -> Project:
        """The project, if the actor may change its files (owner, or an administrator)."""
        project = await project_service.get_visible(db, actor, project_id)
        if project.user_id != actor.user_id and not actor.can(Perm.PROJECTS_MANAGE_ANY):
            raise Forbidden("Only the project's owner may change its files", code="permission_denied")
        return project

    async def get_visible(
        self, db: AsyncSession, actor: Principal, file_id: UUID, *, for_update: bool = False
    ) -> KnowledgeFile:
        file = await file_repository.get(db, file_id, for_update=for_update)
        if file is None:
            raise NotFound("File not found", code="file_not_found")
        try:
            await project_service.get_visible(db, actor, file.project_id)
        except NotFound:
            # Someone else's file is reported missing, exactly like an unknown id.
            raise NotFound("File not found", code="file_not_found") from None
        return file

    async def _get_changeable(self, db: AsyncSession, actor: Principal, file_id: UUID) -> KnowledgeFile:
        file = await self.get_visible(db, actor, file_id, for_update=True)
        await self._project_for_change(db, actor, file.project_id)
        return file

    async def max_file_bytes(self, db: AsyncSession, settings: Settings, user_id: UUID) -> int:
        """The uploader's plan's ``maxFileBytes``, else ``settings.file_max_bytes``."""
        user = await user_service.get(db, user_id)
        limits: dict[str, Any] = await user_service.plan_limits(db, user.plan) if user else {}
        value = limits.get("maxFileBytes")
        return value if isinstance(value, int) and not isinstance(value, bool) else settings.file_max_bytes

    # --- upload ---------------------------------------------------------------------------------

    async def upload(
        self,
        db: AsyncSession,
        settings: Settings,
        actor: Principal,
        *,
        content_type: str | None,
        content_length: int | None,
        body: AsyncIterator[bytes],
        project_id: UUID | None = None,
    ) -> KnowledgeFile:
        """Stream a multipart upload (fields ``file``, ``projectId``, optional ``process``) into
        storage, then record it. ``projectId`` before the file part (or in the query) lets the
        ownership check run before any byte is stored; after it, the stored object is deleted
        when the check fails."""
        max_bytes = await self.max_file_bytes(db, settings, actor.user_id)
        if content_length is not None and content_length > max_bytes + _FORM_OVERHEAD_BYTES:
            raise self._too_large(max_bytes)
        storage = storage_for(settings)
        try:
            reader = MultipartReader(content_type, body, max_bytes=max_bytes + _FORM_OVERHEAD_BYTES)
        except MalformedForm as exc:
            raise UnsupportedMediaType(str(exc), code="multipart_required") from exc
        stored: _StoredObject | None = None
        project: Project | None = None
        process = True
        try:
            while (part := await reader.next_part()) is not None:
                if part.name == "file":
                    if stored is not None:
                        raise ValidationFailed("Send one file per upload", code="one_file_per_upload")
                    if project_id is not None and project is None:
                        project = await self._project_for_change(db, actor, project_id)
                    stored = await self._store(storage, reader, part.filename, max_bytes)
                    continue
                value = await reader.read_value(limit=_FIELD_MAX_BYTES)
                if part.name == "projectId":
                    project_id = self._parse_project_id(value)
                elif part.name == "process":
                    process = self._parse_flag(value)
            if stored is None:
                raise ValidationFailed("The form has no `file` part", code="file_missing")
            if project_id is None:
                raise ValidationFailed("projectId is required", code="project_id_missing")
            if project is None or project.id != project_id:
                project = await self._project_for_change(db, actor, project_id)
            return await self._record_upload(db, settings, actor, project, stored, process=process)
        except MalformedForm as exc:
            if stored is not None:
                await storage.delete(stored.key)
            raise ValidationFailed(str(exc), code="malformed_form") from exc
        except FormTooLarge as exc:
            if stored is not None:
                await storage.delete(stored.key)
            raise self._too_large(max_bytes) from exc
        except BaseException:
            if stored is not None:
                await storage.delete(stored.key)
            raise

    async def _store(
        self, storage: FileStorage, reader: MultipartReader, filename: str | None, max_bytes: int
    ) -> _StoredObject:
        name = clean_file_name(filename)
        object_id = uuid7()
        key = f"{str(object_id)[-2:]}/{object_id}"
        sniffer = ContentSniffer(name)
        digest = hashlib.sha256()
        size = 0
        writer = await storage.open_writer(key)
        try:
            while (chunk := await reader.read_chunk()) is not None:
                size += len(chunk)
                if size > max_bytes:
                    raise self._too_large(max_bytes)
                digest.update(chunk)
                sniffer.feed(chunk)
                await writer.write(chunk)
            try:
                detected = sniffer.result()
            except UnsupportedContent as exc:
                raise UnsupportedMediaType(str(exc), code="unsupported_file_type") from exc
            await writer.commit()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await writer.abort()
            raise
        return _StoredObject(key, size, digest.hexdigest(), detected, name)

    @staticmethod
    def _too_large(max_bytes: int) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"The file is larger than your plan allows ({max_bytes:,} bytes)",
            code="file_too_large",
            details={"maxBytes": max_bytes},
        )

    @staticmethod
    def _parse_project_id(value: str) -> UUID:
        try:
            return UUID(value.strip())
        except ValueError:
            raise ValidationFailed("projectId must be a UUID", code="invalid_project_id") from None

    @staticmethod
    def _parse_flag(value: str) -> bool:
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValidationFailed("process must be true or false", code="invalid_process_flag")

    async def _record_upload(
        self,
        db: AsyncSession,
        settings: Settings,
        actor: Principal,
        project: Project,
        stored: _StoredObject,
        *,
        process: bool,
    ) -> KnowledgeFile:
        file = KnowledgeFile(
            id=uuid7(),
            project_id=project.id,
            uploader_id=actor.user_id,
            name=stored.name,
            kind=stored.detected.kind,
            media_type=stored.detected.media_type,
            size=stored.size,
            sha256=stored.sha256,
            storage_key=stored.key,
            status=FileStatus.UPLOADED,
            chunk_count=0,
            char_count=0,
        )
        db.add(file)
        await db.flush()
        await record_event(
            db,
            "file.uploaded",
            actor_id=actor.user_id,
            subject_id=file.id,
            payload={
                "projectId": str(project.id),
                "name": file.name,
                "kind": file.kind,
                "size": file.size,
                "sha256": file.sha256,
                "storage": storage_for(settings).name,
            },
        )
        if process:
            await self._queue(db, file, actor.user_id)
        return file

    # --- processing -----------------------------------------------------------------------------
    # Writers lock a file's row before its runs' rows (see ``file_repository.run_with_file``), so
    # a request, the worker and the sweep never deadlock on one another.

    async def request_processing(
        self, db: AsyncSession, settings: Settings, actor: Principal, file_id: UUID
    ) -> FileProcessing:
        """Queue (re)processing. A file already queued keeps its pending run; one being processed
        right now is a conflict, unless its run has stalled (its worker died): then that run is
        ended ``failed`` and a new one queued."""
        file = await self._get_changeable(db, actor, file_id)
        if file.status in (FileStatus.PROCESSING, FileStatus.QUEUED):
            latest = await file_repository.latest_processing(db, file.id, for_update=True)
            if file.status == FileStatus.QUEUED and latest is not None and latest.status == FileStatus.QUEUED:
                return latest
            if file.status == FileStatus.PROCESSING:
                if latest is None or not self._stalled(settings, latest):
                    raise Conflict(
                        "The file is being processed right now; try again shortly", code="file_processing"
                    )
                await self._end_failed(db, file, latest, STALLED_REASON)
        return await self._queue(db, file, actor.user_id)

    async def _queue(
        self, db: AsyncSession, file: KnowledgeFile, actor_id: UUID | None, *, retry_of: UUID | None = None
    ) -> FileProcessing:
        result = {"retryOf": str(retry_of)} if retry_of is not None else {}
        processing = FileProcessing(id=uuid7(), file_id=file.id, status=FileStatus.QUEUED, result=result)
        db.add(processing)
        file.status = FileStatus.QUEUED
        file.updated_at = datetime.now(UTC)
        await db.flush()
        await db.refresh(processing)
        await record_event(
            db,
            "file.queued",
            actor_id=actor_id,
            subject_id=file.id,
            payload={"projectId": str(file.project_id), "processingId": str(processing.id)},
        )
        # The job is enqueued on the request's own connection: it exists iff the change commits.
        connection = await (await db.connection()).get_raw_connection()
        await queue.configure_task(PROCESS_FILE_TASK, connection=connection.driver_connection).defer_async(
            processing_id=str(processing.id)
        )
        return processing

    @staticmethod
    def _stalled(settings: Settings, processing: FileProcessing) -> bool:
        started = processing.started_at
        limit = timedelta(seconds=settings.file_processing_timeout_seconds)
        return processing.status == FileStatus.PROCESSING and (
            started is None or datetime.now(UTC) - started > limit
        )

    async def process(self, processing_id: UUID) -> str:
        """The worker's job: extract, chunk and index one file. Returns the run's final status
        (``ready``, ``failed``) or ``skipped`` (the run or its file no longer waits for it).
        A bad file never raises: the run ends ``failed`` with the reason."""
        settings = runtime().settings
        async with sessionmaker()() as db:
            locked = await file_repository.run_with_file(db, processing_id)
            if locked is None or locked[0].status != FileStatus.QUEUED:
                return "skipped"
            processing, file = locked
            started = datetime.now(UTC)
            processing.status = file.status = FileStatus.PROCESSING
            processing.started_at = file.updated_at = started
            file_id, kind, key = file.id, file.kind, file.storage_key
            await commit(db)
        chunks: list[str] = []
        chars = 0
        reason: str | None = None
        try:
            data = await storage_for(settings).read_all(key)
            text = await extract_in_child(kind, data, ExtractionLimits.of(settings), extractor=self.extractor)
            del data
            chunks = chunk_text(text, size=settings.chunk_chars, overlap=settings.chunk_overlap_chars)
            chars = len(text)
        except ExtractionFailed as exc:
            reason = str(exc)
        except StorageError:
            logger.exception("stored file unreadable", extra={"fileId": str(file_id)})
            reason = "The stored file could not be read; upload it again"
        except Exception:
            logger.exception("file processing failed", extra={"fileId": str(file_id)})
            reason = "The file could not be processed"
        return await self._finish(processing_id, chunks, chars, reason)

    async def _finish(self, processing_id: UUID, chunks: list[str], chars: int, reason: str | None) -> str:
        async with sessionmaker()() as db:
            locked = await file_repository.run_with_file(db, processing_id)
            if locked is None or locked[0].status != FileStatus.PROCESSING:
                return "skipped"  # the file was deleted (or the run taken over) meanwhile
            processing, file = locked
            if reason is None:
                now = datetime.now(UTC)
                processing.processed_at = file.processed_at = file.updated_at = now
                await file_repository.replace_chunks(db, file, chunks)
                processing.status = file.status = FileStatus.READY
                processing.result = {"chunks": len(chunks), "chars": chars}
                file.error = None
                file.chunk_count, file.char_count = len(chunks), chars
                await record_event(
                    db,
                    "file.processed",
                    actor_id=None,
                    subject_id=file.id,
                    payload={
                        "projectId": str(file.project_id),
                        "processingId": str(processing.id),
                        "kind": file.kind,
                        "chunks": len(chunks),
                        "chars": chars,
                    },
                )
            else:
                await self._end_failed(db, file, processing, reason)
            status = str(processing.status)
            await commit(db)
            return status

    async def _end_failed(
        self, db: AsyncSession, file: KnowledgeFile, processing: FileProcessing, reason: str
    ) -> None:
        now = datetime.now(UTC)
        processing.status = file.status = FileStatus.FAILED
        processing.processed_at = file.processed_at = file.updated_at = now
        processing.result = {"reason": reason}
        file.error = reason
        await record_event(
            db,
            "file.failed",
            actor_id=None,
            subject_id=file.id,
            payload={
                "projectId": str(file.project_id),
                "processingId": str(processing.id),
                "kind": file.kind,
                "reason": reason,
            },
        )

    async def sweep_stalled_runs(self) -> int:
        """The periodic job: runs still ``processing`` after ``file_processing_timeout_seconds``
        lost their worker (a crash, a deploy). Each is ended ``failed`` and queued again once;
        a run that was itself such a retry leaves its file ``failed``. Returns the runs ended."""
        settings = runtime().settings
        cutoff = datetime.now(UTC) - timedelta(seconds=settings.file_processing_timeout_seconds)
        async with sessionmaker()() as db:
            stalled = await file_repository.runs_processing_since_before(db, cutoff)
        ended = 0
        for processing_id in stalled:
            async with sessionmaker()() as db:
                locked = await file_repository.run_with_file(db, processing_id)
                if locked is None or not self._stalled(settings, locked[0]):
                    continue  # finished (or deleted) meanwhile
                processing, file = locked
                was_a_retry = "retryOf" in processing.result
                await self._end_failed(db, file, processing, STALLED_REASON)
                if not was_a_retry:
                    await self._queue(db, file, None, retry_of=processing.id)
                await commit(db)
                ended += 1
        if ended:
            logger.warning("stalled file processing runs ended", extra={"count": ended})
        return ended

    # --- reading and deleting -------------------------------------------------------------------

    async def list_of_project(
        self, db: AsyncSession, actor: Principal, project_id: UUID, params: PageParams, status: str | None
    ) -> tuple[list[FileOut], int]:
        await project_service.get_visible(db, actor, project_id)
        stmt = file_repository.of_project(project_id, status)
        stmt = apply_sort(stmt, params.sort, _SORTABLE, default="-uploadedAt", tiebreak=KnowledgeFile.id)
        files, total = await paginate(db, stmt, params)
        return [file_out(f) for f in files], total

    async def summaries(self, db: AsyncSession, project_ids: Sequence[UUID]) -> dict[UUID, list[FileSummary]]:
        """For the projects domain: each project's files, oldest first."""
        found: dict[UUID, list[FileSummary]] = {}
        for file in await file_repository.of_projects(db, project_ids):
            found.setdefault(file.project_id, []).append(
                FileSummary(
                    id=file.id, name=file.name, size=file.size, type=file.media_type, status=file.status
                )
            )
        return found

    async def download(self, settings: Settings, file: KnowledgeFile) -> AsyncIterator[bytes]:
        """The stored bytes, in chunks; the first is read here, so a missing object is a clean
        error rather than a response cut short."""
        chunks = storage_for(settings).read(file.storage_key)
        try:
            first = await anext(chunks, b"")
        except StorageError as exc:
            logger.error("stored object missing", extra={"fileId": str(file.id), "key": file.storage_key})
            raise NotFound("The file's content is missing from storage", code="file_content_missing") from exc

        async def rest() -> AsyncIterator[bytes]:
            if first:
                yield first
            async for chunk in chunks:
                yield chunk

        return rest()

    async def delete(self, db: AsyncSession, settings: Settings, actor: Principal, file_id: UUID) -> None:
        """Delete the row (its chunks and runs go with it); the stored object is deleted once
        that has committed, so a failed request never loses the bytes of a file it kept."""
        file = await self._get_changeable(db, actor, file_id)
        key, storage = file.storage_key, storage_for(settings)
        await record_event(
            db,
            "file.deleted",
            actor_id=actor.user_id,
            subject_id=file.id,
            payload={"projectId": str(file.project_id), "name": file.name, "size": file.size},
        )
        await db.delete(file)
        await db.flush()

        async def delete_object() -> None:
            try:
                await storage.delete(key)
            except Exception:
                logger.exception("stored object not deleted", extra={"key": key})

        after_commit(db, delete_object)


file_service = FileService()
