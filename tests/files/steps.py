"""Steps of the knowledge-file journeys: upload through the API, run the real worker."""

from typing import Any
from uuid import UUID

import httpx
from procrastinate import PsycopgConnector
from sqlalchemy import text

from app.core.config import Settings
from app.core.db import sessionmaker
from app.worker.queue import libpq_url, queue
from tests.factories import Account

UPLOAD = "/api/files/upload"


async def upload(
    client: httpx.AsyncClient,
    who: Account,
    project_id: UUID | str,
    name: str,
    content: bytes,
    *,
    process: bool | None = None,
    expect: int = 201,
    content_type: str = "application/octet-stream",
) -> dict[str, Any]:
    data = {"projectId": str(project_id)}
    if process is not None:
        data["process"] = "true" if process else "false"
    response = await client.post(
        UPLOAD, data=data, files={"file": (name, content, content_type)}, headers=who.headers
    )
    assert response.status_code == expect, response.text
    return dict(response.json())


async def ask_to_process(client: httpx.AsyncClient, who: Account, file_id: str) -> httpx.Response:
    """``POST /api/files/process`` for ``file_id``, as ``who``."""
    return await client.post("/api/files/process", json={"fileId": file_id}, headers=who.headers)


async def run_worker(settings: Settings) -> None:
    """The real procrastinate worker, on the test database, until the files queue is empty."""
    connector = PsycopgConnector(conninfo=libpq_url(settings.database_url or ""))
    with queue.replace_connector(connector) as app:
        async with app.open_async():
            await app.run_worker_async(
                queues=["files"], wait=False, listen_notify=False, install_signal_handlers=False
            )


async def job_statuses() -> list[str]:
    async with sessionmaker()() as db:
        rows = await db.execute(
            text("SELECT status FROM procrastinate_jobs WHERE task_name = 'files.process_file' ORDER BY id")
        )
        return [str(status) for status in rows.scalars()]


async def file_of(client: httpx.AsyncClient, who: Account, file_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/files/{file_id}", headers=who.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())
