"""Processing knowledge files in the worker: extraction, chunking, indexing; hostile and broken
files end ``failed`` with a reason a person understands, and the worker carries on."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select, text, update

from app.core.config import Settings
from app.core.db import sessionmaker
from app.files.service import file_service
from app.files.tasks import sweep_stalled_runs
from app.models import FileProcessing, KnowledgeChunk, KnowledgeFile
from tests.factories import Account, create_project, events_of, signed_in
from tests.files.documents import encrypted_pdf, make_docx, make_pdf, malformed_pdf, zip_bomb_docx
from tests.files.hostile_extractors import misbehaving
from tests.files.steps import ask_to_process, file_of, job_statuses, run_worker, upload

HANDBOOK = "\n\n".join(
    f"Section {i}. The Heron {i} kayak weighs {10 + i} kilograms and carries {100 + i} kilograms of load."
    for i in range(40)
)


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> Account:
    """A builder, signed in."""
    return await signed_in(client, "builder")


@pytest.fixture
async def project(owner: Account) -> UUID:
    """A project of the owner's, where the tests upload."""
    return await create_project(owner)


async def chunk_rows(file_id: str) -> list[tuple[str, int, str]]:
    async with sessionmaker()() as db:
        rows = await db.execute(
            select(KnowledgeChunk.id, KnowledgeChunk.ordinal, KnowledgeChunk.content)
            .where(KnowledgeChunk.file_id == file_id)
            .order_by(KnowledgeChunk.ordinal)
        )
        return [(str(i), o, c) for i, o, c in rows]


async def test_a_processed_file_is_ready_with_its_chunks(
    client: httpx.AsyncClient, settings: Settings, owner: Account, project: UUID
) -> None:
    file = await upload(client, owner, project, "handbook.txt", HANDBOOK.encode(), process=False)

    queued = await ask_to_process(client, owner, file["id"])
    assert queued.status_code == 202, queued.text
    assert queued.json()["status"] == "queued"
    assert (await file_of(client, owner, file["id"]))["status"] == "queued"
    await run_worker(settings)

    ready = await file_of(client, owner, file["id"])
    assert ready["status"] == "ready"
    assert ready["error"] is None
    assert ready["processedAt"] is not None
    chunks = await chunk_rows(file["id"])
    assert ready["chunkCount"] == len(chunks) > 1
    assert [o for _, o, _ in chunks] == list(range(len(chunks)))
    assert all(len(c) <= settings.chunk_chars for _, _, c in chunks)
    text = " ".join(c for _, _, c in chunks)
    assert all(f"Section {i}." in text for i in range(40))
    [processed] = [e for e in await events_of("file.") if e["type"] == "file.processed"]
    assert processed["payload"]["chunks"] == len(chunks)
    assert processed["payload"]["chars"] == len(HANDBOOK)
    assert await job_statuses() == ["succeeded"]


async def test_reprocessing_a_ready_file_replaces_its_chunks(
    client: httpx.AsyncClient, settings: Settings, owner: Account, project: UUID
) -> None:
    file = await upload(client, owner, project, "handbook.txt", HANDBOOK.encode())
    await run_worker(settings)
    before = await chunk_rows(file["id"])

    again = await ask_to_process(client, owner, file["id"])
    assert again.status_code == 202
    await run_worker(settings)

    after = await chunk_rows(file["id"])
    assert [(o, c) for _, o, c in after] == [(o, c) for _, o, c in before]
    assert not {i for i, _, _ in after} & {i for i, _, _ in before}, "the old chunks are gone"
    assert (await file_of(client, owner, file["id"]))["chunkCount"] == len(after)


async def test_asking_twice_while_queued_keeps_one_pending_run(
    client: httpx.AsyncClient, settings: Settings, owner: Account, project: UUID
) -> None:
    file = await upload(client, owner, project, "a.txt", b"Kayaks float.")

    first = await ask_to_process(client, owner, file["id"])
    second = await ask_to_process(client, owner, file["id"])

    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert await job_statuses() == ["todo"]


async def test_a_bad_file_fails_with_a_reason_and_the_next_one_is_still_processed(
    client: httpx.AsyncClient, settings: Settings, owner: Account, project: UUID
) -> None:
    bad = await upload(client, owner, project, "broken.pdf", malformed_pdf())
    good = await upload(client, owner, project, "good.md", b"# Good\n\nThis one is fine.")

    await run_worker(settings)

    failed = await file_of(client, owner, bad["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == "The PDF is damaged or malformed and could not be read"
    assert failed["chunkCount"] == 0
    assert (await file_of(client, owner, good["id"]))["status"] == "ready"
    assert await job_statuses() == ["succeeded", "succeeded"]
    [failure] = [e for e in await events_of("file.") if e["type"] == "file.failed"]
    assert failure["payload"]["reason"] == failed["error"]


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("secret.pdf", encrypted_pdf(), "password-protected"),
        ("scan.pdf", make_pdf(""), "no extractable text"),
        ("bomb.docx", zip_bomb_docx(), "zip bomb"),
        ("blank.txt", b"   \n\n  \t\n", "no text to index"),
    ],
)
async def test_hostile_or_empty_files_end_failed_with_a_human_reason(
    client: httpx.AsyncClient,
    settings: Settings,
    owner: Account,
    project: UUID,
    name: str,
    content: bytes,
    reason: str,
) -> None:
    file = await upload(client, owner, project, name, content)

    await run_worker(settings)

    failed = await file_of(client, owner, file["id"])
    assert failed["status"] == "failed"
    assert reason in failed["error"]
    assert await job_statuses() == ["succeeded"]


async def test_a_failed_file_can_be_processed_again(
    client: httpx.AsyncClient, settings: Settings, owner: Account, project: UUID
) -> None:
    file = await upload(client, owner, project, "blank.txt", b"  \n")
    await run_worker(settings)
    assert (await file_of(client, owner, file["id"]))["status"] == "failed"

    retry = await ask_to_process(client, owner, file["id"])

    assert retry.status_code == 202
    assert (await file_of(client, owner, file["id"]))["status"] == "queued"


async def test_a_file_deleted_while_queued_is_skipped_by_the_worker(
    client: httpx.AsyncClient, settings: Settings, owner: Account, project: UUID
) -> None:
    file = await upload(client, owner, project, "doc.docx", make_docx("Doc\n\nSome words here."))
    assert (await client.delete(f"/api/files/{file['id']}", headers=owner.headers)).status_code == 204

    await run_worker(settings)

    assert await job_statuses() == ["succeeded"]
    async with sessionmaker()() as db:
        assert (await db.execute(select(func.count()).select_from(KnowledgeChunk))).scalar_one() == 0


async def test_deleting_a_processed_file_removes_its_chunks(
    client: httpx.AsyncClient, settings: Settings, owner: Account, project: UUID
) -> None:
    file = await upload(client, owner, project, "handbook.txt", HANDBOOK.encode())
    await run_worker(settings)
    assert await chunk_rows(file["id"])

    assert (await client.delete(f"/api/files/{file['id']}", headers=owner.headers)).status_code == 204

    assert await chunk_rows(file["id"]) == []


# --- a worker that dies, a file that hangs or explodes ------------------------------------------


async def simulate_a_worker_that_died(file_id: str, minutes_ago: float) -> None:
    """The state a worker killed mid-run leaves: the run and file ``processing`` since it
    started, and its job ``doing`` forever."""
    async with sessionmaker()() as db:
        started = datetime.now(UTC) - timedelta(minutes=minutes_ago)
        run = (
            await db.execute(
                select(FileProcessing).where(
                    FileProcessing.file_id == file_id, FileProcessing.status == "queued"
                )
            )
        ).scalar_one()
        run.status, run.started_at = "processing", started
        await db.execute(update(KnowledgeFile).where(KnowledgeFile.id == file_id).values(status="processing"))
        await db.execute(
            text("UPDATE procrastinate_jobs SET status = 'doing' WHERE args->>'processing_id' = :run"),
            {"run": str(run.id)},
        )
        await db.commit()


async def runs_of(file_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with sessionmaker()() as db:
        rows = await db.execute(
            select(FileProcessing.status, FileProcessing.result)
            .where(FileProcessing.file_id == file_id)
            .order_by(FileProcessing.created_at, FileProcessing.id)
        )
        return [(status, result) for status, result in rows]


async def test_a_run_whose_worker_died_is_queued_again_by_the_sweep_and_then_processed(
    client: httpx.AsyncClient, settings: Settings, owner: Account, project: UUID
) -> None:
    stuck = await upload(client, owner, project, "stuck.md", b"# Stuck\n\nA worker died on this one.")
    recent = await upload(client, owner, project, "recent.md", b"# Recent\n\nStill being processed.")
    await simulate_a_worker_that_died(
        stuck["id"], minutes_ago=settings.file_processing_timeout_seconds / 60 + 1
    )
    await simulate_a_worker_that_died(recent["id"], minutes_ago=1)

    assert await sweep_stalled_runs(0) == 1

    assert (await file_of(client, owner, stuck["id"]))["status"] == "queued"
    [(first, ended), (second, _)] = await runs_of(stuck["id"])
    assert (first, ended) == ("failed", {"reason": "Processing did not finish (its worker stopped)"})
    assert second == "queued"
    assert (await file_of(client, owner, recent["id"]))["status"] == "processing", "not stalled yet"
    busy = await ask_to_process(client, owner, recent["id"])
    assert busy.status_code == 409
    await run_worker(settings)
    assert (await file_of(client, owner, stuck["id"]))["status"] == "ready"
    types = [e["type"] for e in await events_of("file.") if e["subject_id"] == stuck["id"]]
    assert types == ["file.uploaded", "file.queued", "file.failed", "file.queued", "file.processed"]


async def test_a_retry_that_stalls_too_leaves_the_file_failed(
    client: httpx.AsyncClient, settings: Settings, owner: Account, project: UUID
) -> None:
    file = await upload(client, owner, project, "stuck.md", b"# Stuck\n\nTwice.")
    long_ago = settings.file_processing_timeout_seconds / 60 + 1
    await simulate_a_worker_that_died(file["id"], minutes_ago=long_ago)
    await sweep_stalled_runs(0)
    await simulate_a_worker_that_died(file["id"], minutes_ago=long_ago)

    assert await sweep_stalled_runs(0) == 1

    failed = await file_of(client, owner, file["id"])
    assert (failed["status"], failed["error"]) == ("failed", "Processing did not finish (its worker stopped)")
    assert [status for status, _ in await runs_of(file["id"])] == ["failed", "failed"]
    assert await sweep_stalled_runs(0) == 0


async def test_asking_to_process_a_file_whose_run_stalled_starts_it_over(
    client: httpx.AsyncClient, settings: Settings, owner: Account, project: UUID
) -> None:
    file = await upload(client, owner, project, "stuck.md", b"# Stuck\n\nStarted over.")
    await simulate_a_worker_that_died(
        file["id"], minutes_ago=settings.file_processing_timeout_seconds / 60 + 1
    )

    again = await ask_to_process(client, owner, file["id"])

    assert again.status_code == 202, again.text
    assert [status for status, _ in await runs_of(file["id"])] == ["failed", "queued"]
    await run_worker(settings)
    assert (await file_of(client, owner, file["id"]))["status"] == "ready"


@pytest.mark.parametrize(
    "settings_changes",
    # The deadline leaves room for a loaded machine: only the hanging file waits it out.
    [{"file_extract_timeout_seconds": 6.0, "file_extract_max_memory_bytes": 256 * 1024 * 1024}],
)
async def test_a_file_that_hangs_explodes_or_crashes_its_reader_fails_and_the_next_is_processed(
    client: httpx.AsyncClient,
    settings: Settings,
    owner: Account,
    project: UUID,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(file_service, "extractor", misbehaving)
    hangs = await upload(client, owner, project, "hangs.txt", b"HANG on a crafted file")
    greedy = await upload(client, owner, project, "greedy.txt", b"GREEDY for memory")
    crashes = await upload(client, owner, project, "crashes.txt", b"CRASH the reader")
    good = await upload(client, owner, project, "good.md", b"# Good\n\nThis one is fine.")

    await run_worker(settings)

    errors = {
        name: (await file_of(client, owner, f["id"]))["error"]
        for name, f in [("hangs", hangs), ("greedy", greedy), ("crashes", crashes)]
    }
    assert errors == {
        "hangs": "Processing the file took too long (more than 6 seconds); split it or simplify it",
        "greedy": "The file needs too much memory to process; split it or simplify it",
        "crashes": "The file could not be processed",
    }
    assert (await file_of(client, owner, good["id"]))["status"] == "ready"
    assert await job_statuses() == ["succeeded"] * 4


@pytest.mark.parametrize("settings_changes", [{"file_max_text_chars": 1000}])
async def test_a_file_with_more_text_than_allowed_fails_with_a_reason(
    client: httpx.AsyncClient, settings: Settings, owner: Account, project: UUID
) -> None:
    file = await upload(client, owner, project, "long.txt", b"Kayak lore. " * 100)

    await run_worker(settings)

    failed = await file_of(client, owner, file["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == (
        "The file holds more than 1,000 characters of text, the most that can be indexed. "
        "Split it into smaller files"
    )
