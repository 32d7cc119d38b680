"""Jobs of the files domain: turning an uploaded file into searchable chunks."""

from uuid import UUID

from app.files.service import PROCESS_FILE_TASK, file_service
from app.worker.queue import queue


@queue.task(name=PROCESS_FILE_TASK, queue="files")
async def process_file(processing_id: str) -> str:
    """Enqueued with the processing run (upload with ``process``, or ``POST /api/files/process``).
    A bad file ends the run ``failed`` with its reason; the job itself succeeds."""
    return await file_service.process(UUID(processing_id))
