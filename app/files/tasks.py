"""Jobs of the files domain: turning an uploaded file into searchable chunks, and ending runs
whose worker died."""

from uuid import UUID

from app.files.service import PROCESS_FILE_TASK, file_service
from app.worker.queue import queue


@queue.task(name=PROCESS_FILE_TASK, queue="files")
async def process_file(processing_id: str) -> str:
    """Enqueued with the processing run (upload with ``process``, or ``POST /api/files/process``).
    A bad file ends the run ``failed`` with its reason; the job itself succeeds."""
    return await file_service.process(UUID(processing_id))


@queue.periodic(cron="* * * * *")
@queue.task(name="files.sweep_stalled_runs", queue="maintenance")
async def sweep_stalled_runs(timestamp: int) -> int:
    """Every minute: runs left ``processing`` by a worker that died are failed, and queued
    again once (``FileService.sweep_stalled_runs``)."""
    return await file_service.sweep_stalled_runs()
