"""Retrieval quality on a small, labelled knowledge base: the Tidewater Kayaks documents of
``tests/fixtures/knowledge`` (Markdown, PDF, DOCX, CSV, HTML, JSON) uploaded and processed
through the real API and worker, then asked the questions of ``questions.json``."""

import re
from uuid import UUID

import httpx

from app.core.config import Settings
from app.core.db import sessionmaker
from app.files.retrieval import retrieve
from tests.factories import Account, create_project, signed_in
from tests.files.documents import knowledge_base, questions
from tests.files.steps import file_of, run_worker, upload


def _normal(text: str) -> str:
    return " ".join(text.split()).lower()


async def _processed_knowledge_base(
    client: httpx.AsyncClient, settings: Settings, owner: Account
) -> tuple[UUID, dict[str, str]]:
    project = await create_project(owner, name="Tidewater support")
    ids = {
        name: (await upload(client, owner, project, name, content))["id"]
        for name, content in knowledge_base().items()
    }
    await run_worker(settings)
    for name, file_id in ids.items():
        file = await file_of(client, owner, file_id)
        assert file["status"] == "ready", (name, file)
        assert file["chunkCount"] >= 1
    return project, ids


async def test_questions_find_the_passage_that_answers_them(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    owner = await signed_in(client, "builder")
    project, ids = await _processed_knowledge_base(client, settings, owner)
    labelled = questions()
    assert len(labelled) >= 25

    hits_at_1 = hits_at_3 = 0
    misses = []
    async with sessionmaker()() as db:
        for item in labelled:
            citations = await retrieve(db, project, item["question"], limit=3)
            assert [c.score for c in citations] == sorted((c.score for c in citations), reverse=True)
            right = [
                c.file_id == ids[item["file"]] and _normal(item["phrase"]) in _normal(c.text)
                for c in citations
            ]
            hits_at_1 += bool(right[:1] and right[0])
            hits_at_3 += any(right)
            if not any(right):
                misses.append((item["question"], [(c.file_name, c.text[:60]) for c in citations]))

    hit_at_3 = hits_at_3 / len(labelled)
    figures = f"hit@1 {hits_at_1 / len(labelled):.2f}, hit@3 {hit_at_3:.2f}"
    print(f"\nretrieval over {len(labelled)} questions: {figures}")  # noqa: T201 (the figure, with -s)
    for miss in misses:
        print("  miss:", miss)  # noqa: T201
    assert hit_at_3 >= 0.9, misses


async def test_only_ready_files_of_the_asked_project_are_searched(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    owner = await signed_in(client, "builder")
    project, ids = await _processed_knowledge_base(client, settings, owner)
    other = await create_project(owner, name="Another project")
    await upload(
        client, owner, other, "notes.txt", b"The Heron 12 is painted with glitter in the other project."
    )
    await run_worker(settings)
    unprocessed = await upload(
        client, owner, project, "draft.txt", b"Glitter paint is available for every kayak.", process=False
    )

    async with sessionmaker()() as db:
        found = await retrieve(db, project, "Which kayaks come with glitter paint?", limit=5)
        nothing = await retrieve(db, project, "the and of", limit=5)
        punctuation = await retrieve(db, project, "':|&!()\\ <-> *", limit=5)

    assert all(c.file_id in ids.values() for c in found)
    assert unprocessed["id"] not in {c.file_id for c in found}
    assert nothing == []
    assert punctuation == []
    assert not any(re.search("glitter", c.text, re.I) for c in found)
