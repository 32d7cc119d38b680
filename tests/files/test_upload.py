"""Uploading knowledge files: streamed to storage, sniffed from their content, limited by plan;
then listed, downloaded and deleted."""

import hashlib
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from app.core.config import Settings
from tests.factories import create_project, events_of, signed_in
from tests.files.documents import make_docx, make_pdf, plain_zip
from tests.files.steps import UPLOAD, upload
from tests.matrix import assert_error_shape

FREE_PLAN_MAX_BYTES = 10 * 1024 * 1024


def stored_objects(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.local_files_dir().rglob("*") if p.is_file())


def multipart_body(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> list[bytes]:
    """A multipart/form-data body as pieces (to send it chunked, without Content-Length)."""
    pieces = []
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        pieces.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode())
        pieces.append(content)
        pieces.append(b"\r\n")
    pieces.append(f"--{boundary}--\r\n".encode())
    return pieces


async def chunked(pieces: list[bytes], size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for piece in pieces:
        for start in range(0, len(piece), size):
            yield piece[start : start + size]


async def test_an_upload_is_stored_with_its_hash_type_and_size(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)
    content = b"# Paddling\n\nKeep your elbows low.\n"

    body = await upload(client, owner, project, "paddling.md", content, process=False)

    assert body["name"] == "paddling.md"
    assert body["size"] == len(content)
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert (body["kind"], body["type"]) == ("md", "text/markdown; charset=utf-8")
    assert body["status"] == "uploaded"
    assert body["chunkCount"] == 0
    assert body["url"] == f"/api/files/{body['id']}?download=1"
    assert [p.read_bytes() for p in stored_objects(settings)] == [content]
    project_view = (await client.get(f"/api/projects/{project}", headers=owner.headers)).json()
    assert project_view["files"] == [
        {
            "id": body["id"],
            "name": "paddling.md",
            "size": len(content),
            "type": body["type"],
            "status": "uploaded",
        }
    ]
    [event] = await events_of("file.")
    assert event["type"] == "file.uploaded"
    assert event["payload"]["sha256"] == body["sha256"]


async def test_an_upload_queues_processing_unless_told_not_to(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)

    queued = await upload(client, owner, project, "a.txt", b"Queued by default.")

    assert queued["status"] == "queued"
    assert [e["type"] for e in await events_of("file.")] == ["file.uploaded", "file.queued"]


async def test_a_file_larger_than_the_json_body_limit_streams_through(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)
    content = b"A line of kayak lore that repeats.\n" * 100_000  # 3.5 MB, over the 1 MiB JSON limit
    assert len(content) > settings.max_request_body_bytes

    body = await upload(client, owner, project, "lore.txt", content, process=False)

    assert body["size"] == len(content)
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    oversized_json = await client.post(
        "/api/projects", content=b"{" + b" " * 2_000_000 + b"}", headers=owner.headers
    )
    assert oversized_json.status_code == 413, "the JSON body limit still holds elsewhere"


async def test_a_file_over_the_plan_limit_is_refused_and_leaves_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    owner = await signed_in(client, "builder")  # the free plan: 10 MiB
    project = await create_project(owner)
    at_limit = await upload(client, owner, project, "max.txt", b"k" * FREE_PLAN_MAX_BYTES, process=False)
    assert at_limit["size"] == FREE_PLAN_MAX_BYTES
    objects = stored_objects(settings)
    events = await events_of("file.")

    # Without Content-Length, so the limit is found while streaming.
    boundary = uuid4().hex
    pieces = multipart_body(
        boundary,
        [("projectId", None, str(project).encode()), ("file", "big.txt", b"k" * (FREE_PLAN_MAX_BYTES + 1))],
    )
    streamed = await client.post(
        UPLOAD,
        content=chunked(pieces),
        headers={**owner.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    # With Content-Length: refused before reading the body.
    declared = await client.post(
        UPLOAD,
        data={"projectId": str(project)},
        files={"file": ("big.txt", b"k" * (FREE_PLAN_MAX_BYTES + 100_000))},
        headers=owner.headers,
    )

    for response in (streamed, declared):
        assert response.status_code == 413, response.text
        error = assert_error_shape(response)
        assert error["code"] == "file_too_large"
        assert error["details"] == {"maxBytes": FREE_PLAN_MAX_BYTES}
    assert stored_objects(settings) == objects, "the partial object must be deleted"
    assert await events_of("file.") == events
    listed = await client.get(f"/api/files/project/{project}", headers=owner.headers)
    assert listed.json()["pagination"]["total"] == 1


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("policy.pdf", make_pdf("Returns within 30 days."), "pdf"),
        ("policy.txt", make_pdf("A PDF named as text is still a PDF."), "pdf"),
        ("guide.docx", make_docx("Guide\n\nUse the X-Dealer-Key header."), "docx"),
        ("guide", make_docx("Guide\n\nNo extension at all."), "docx"),
        ("notes.txt", "Plain UTF-8 text with accents: café, Åland.".encode(), "txt"),
        ("README", b"No extension: plain text.", "txt"),
        ("page.html", b"<p>Hello</p>", "html"),
        ("page", b"<!DOCTYPE html><html><body>Hi</body></html>", "html"),
        ("prices.csv", b"model,price\nHeron,899\n", "csv"),
        ("faq.json", b'{"q": "Can I?", "a": [1, 2.5, true, null]}', "json"),
        ("export", b'[{"q": "JSON without a name"}]', "json"),
        ("bom.txt", b"\xef\xbb\xbfText with a byte order mark.", "txt"),
    ],
)
async def test_the_type_is_detected_from_the_content(
    client: httpx.AsyncClient, name: str, content: bytes, kind: str
) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)

    body = await upload(client, owner, project, name, content, process=False)

    assert body["kind"] == kind


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "Unsupported file type"),
        ("photo.txt", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "Unsupported file type"),
        ("fake.pdf", b"Just text pretending to be a PDF.", "named .pdf but its content is not one"),
        ("fake.docx", b"Just text pretending to be a Word document.", "named .docx but"),
        ("archive.docx", plain_zip(), "not a Word document"),
        ("broken.json", b'{"q": "no closing brace"', "not valid JSON"),
        ("trailing.json", b'{"a": 1} {"b": 2}', "not valid JSON"),
        ("latin1.txt", "Caf\xe9 cr\xe8me".encode("latin-1"), "Unsupported file type"),
        ("nul.txt", b"text with a \x00 NUL byte", "Unsupported file type"),
        ("report.csv", make_pdf("A PDF named .csv."), "named .csv but is a PDF"),
        ("empty.txt", b"", "empty"),
    ],
)
async def test_unsupported_content_is_refused_with_415_and_nothing_is_kept(
    client: httpx.AsyncClient, settings: Settings, name: str, content: bytes, reason: str
) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)

    response = await client.post(
        UPLOAD, data={"projectId": str(project)}, files={"file": (name, content)}, headers=owner.headers
    )

    assert response.status_code == 415, response.text
    error = assert_error_shape(response)
    assert error["code"] == "unsupported_file_type"
    assert reason in error["message"]
    assert stored_objects(settings) == []
    assert await events_of("file.") == []


async def test_malformed_forms_are_clear_errors_that_store_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)
    file = {"file": ("a.txt", b"hello")}
    boundary = uuid4().hex
    truncated = b"".join(multipart_body(boundary, [("projectId", None, str(project).encode())]))[:-8]
    long_boundary = "b" * 257
    cases = [
        (
            client.post(UPLOAD, json={"projectId": str(project)}, headers=owner.headers),
            415,
            "multipart_required",
        ),
        (
            client.post(UPLOAD, files=[("projectId", (None, str(project)))], headers=owner.headers),
            422,
            "file_missing",
        ),
        (client.post(UPLOAD, files=file, headers=owner.headers), 422, "project_id_missing"),
        (
            client.post(UPLOAD, data={"projectId": "nope"}, files=file, headers=owner.headers),
            422,
            "invalid_project_id",
        ),
        (
            client.post(
                UPLOAD,
                data={"projectId": str(project), "process": "maybe"},
                files=file,
                headers=owner.headers,
            ),
            422,
            "invalid_process_flag",
        ),
        (
            client.post(
                UPLOAD,
                data={"projectId": str(project)},
                files=[("file", ("a.txt", b"one")), ("file", ("b.txt", b"two"))],
                headers=owner.headers,
            ),
            422,
            "one_file_per_upload",
        ),
        (
            client.post(
                UPLOAD,
                content=truncated,
                headers={**owner.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            ),
            422,
            "malformed_form",
        ),
        (
            client.post(
                UPLOAD,
                content=b"".join(multipart_body(long_boundary, [("file", "a.txt", b"hello")])),
                headers={**owner.headers, "Content-Type": f"multipart/form-data; boundary={long_boundary}"},
            ),
            415,
            "multipart_required",
        ),
        (
            client.post(UPLOAD, data={"projectId": str(uuid4())}, files=file, headers=owner.headers),
            404,
            "project_not_found",
        ),
    ]
    for request, status, code in cases:
        response = await request
        assert response.status_code == status, response.text
        assert assert_error_shape(response)["code"] == code
    assert stored_objects(settings) == []
    assert await events_of("file.") == []


class CountingBody:
    """A request body that counts how many of its bytes the server pulled."""

    def __init__(self, pieces: list[bytes], tail: bytes = b"", tail_bytes: int = 0) -> None:
        self.pieces, self.tail, self.tail_bytes = pieces, tail, tail_bytes
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in chunked(self.pieces, size=64 * 1024):
            self.pulled += len(chunk)
            yield chunk
        for _ in range(self.tail_bytes // len(self.tail)):
            self.pulled += len(self.tail)
            yield self.tail


async def test_nothing_after_the_closing_boundary_is_read(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)
    boundary = uuid4().hex
    form = multipart_body(boundary, [("projectId", None, str(project).encode()), ("file", "a.txt", b"hi")])
    body = CountingBody(form, tail=b"epilogue " * 7000, tail_bytes=50 * 1024 * 1024)

    response = await client.post(
        UPLOAD,
        content=body.__aiter__(),
        headers={**owner.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    assert response.status_code == 201, response.text
    assert body.pulled < 100 * 1024, f"{body.pulled:,} bytes read for a form of a few hundred"


async def test_a_body_longer_than_the_plan_allows_is_refused_without_reading_it_all(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    owner = await signed_in(client, "builder")  # the free plan: 10 MiB
    project = await create_project(owner)
    boundary = uuid4().hex
    # A preamble of blank lines is skipped by the parser, so only a count of the bytes stops it.
    preamble = b"\r\n" * (FREE_PLAN_MAX_BYTES // 2 + 1024 * 1024)
    form = multipart_body(boundary, [("projectId", None, str(project).encode()), ("file", "a.txt", b"hi")])
    body = CountingBody([preamble, *form])

    response = await client.post(
        UPLOAD,
        content=body.__aiter__(),
        headers={**owner.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    assert response.status_code == 413, response.text
    assert assert_error_shape(response)["code"] == "file_too_large"
    assert body.pulled < len(preamble), "refused once the plan's limit (and a little) was read"
    assert stored_objects(settings) == []
    assert await events_of("file.") == []


async def test_an_upload_is_never_held_whole_in_memory(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)
    line = b"A line of kayak lore, sent a piece at a time.\n" * 1000

    async def peak_memory_of_upload(size: int) -> int:
        boundary = uuid4().hex
        pieces = multipart_body(
            boundary, [("projectId", None, str(project).encode()), ("file", "a.txt", b"")]
        )
        opening, closing = b"".join(pieces[:4]), b"".join(pieces[5:])  # around the file's content

        async def body() -> AsyncIterator[bytes]:
            yield opening
            for _ in range(size // len(line)):
                yield line
            yield closing

        tracemalloc.start()
        try:
            response = await client.post(
                UPLOAD,
                content=body(),
                headers={**owner.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert response.status_code == 201, response.text
        assert response.json()["size"] == size // len(line) * len(line)
        return peak

    await peak_memory_of_upload(len(line))  # the first request builds caches of its own
    small = await peak_memory_of_upload(1024 * 1024)
    large = await peak_memory_of_upload(FREE_PLAN_MAX_BYTES)

    assert large - small < (FREE_PLAN_MAX_BYTES - 1024 * 1024) / 8, (small, large)
    assert large < FREE_PLAN_MAX_BYTES / 3, (small, large)


async def test_the_project_id_may_come_after_the_file_or_in_the_query(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)

    file_first = await client.post(
        UPLOAD,
        files=[("file", ("late.txt", b"file first", "text/plain")), ("projectId", (None, str(project)))],
        headers=owner.headers,
    )
    in_query = await client.post(
        f"{UPLOAD}?projectId={project}", files={"file": ("q.txt", b"query")}, headers=owner.headers
    )

    assert file_first.status_code == in_query.status_code == 201
    assert file_first.json()["projectId"] == in_query.json()["projectId"] == str(project)


async def test_download_streams_the_bytes_as_an_attachment(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)
    content = make_pdf("Returns within 30 days.")
    file = await upload(client, owner, project, "Rückgabe policy.pdf", content, process=False)

    response = await client.get(file["url"], headers=owner.headers)

    assert response.status_code == 200
    assert response.content == content
    assert response.headers["content-type"] == "application/pdf"
    assert (
        response.headers["content-disposition"] == "attachment; filename*=UTF-8''R%C3%BCckgabe%20policy.pdf"
    )
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_file_name_is_cleaned_of_paths_and_control_characters(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)
    boundary = uuid4().hex
    body = b"".join(
        multipart_body(
            boundary,
            [("projectId", None, str(project).encode()), ("file", "..\\..\\etc/pass\twd\x07.txt", b"text")],
        )
    )

    response = await client.post(
        UPLOAD,
        content=body,
        headers={**owner.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    assert response.status_code == 201, response.text
    assert response.json()["name"] == "passwd.txt"


async def test_deleting_a_file_removes_its_bytes_and_record(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)
    keep = await upload(client, owner, project, "keep.txt", b"keep me", process=False)
    gone = await upload(client, owner, project, "gone.txt", b"delete me", process=False)

    response = await client.delete(f"/api/files/{gone['id']}", headers=owner.headers)

    assert response.status_code == 204
    assert (await client.get(f"/api/files/{gone['id']}", headers=owner.headers)).status_code == 404
    assert [p.read_bytes() for p in stored_objects(settings)] == [b"keep me"]
    listed = (await client.get(f"/api/files/project/{project}", headers=owner.headers)).json()
    assert [f["id"] for f in listed["items"]] == [keep["id"]]
    deleted = [e for e in await events_of("file.") if e["type"] == "file.deleted"]
    assert [e["subject_id"] for e in deleted] == [gone["id"]]
    again = await client.delete(f"/api/files/{gone['id']}", headers=owner.headers)
    assert again.status_code == 404


async def test_a_projects_files_are_listed_a_page_at_a_time(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)
    other = await create_project(owner, name="Other")
    names = [f"file-{i}.txt" for i in range(5)]
    for name in names:
        await upload(client, owner, project, name, name.encode(), process=False)
    await upload(client, owner, other, "elsewhere.txt", b"elsewhere", process=False)

    first = (
        await client.get(f"/api/files/project/{project}?limit=2&sort=name", headers=owner.headers)
    ).json()
    third = (
        await client.get(f"/api/files/project/{project}?limit=2&page=3&sort=name", headers=owner.headers)
    ).json()
    newest = (await client.get(f"/api/files/project/{project}?limit=1", headers=owner.headers)).json()
    filtered = (await client.get(f"/api/files/project/{project}?status=ready", headers=owner.headers)).json()
    bad_sort = await client.get(f"/api/files/project/{project}?sort=sha256", headers=owner.headers)

    assert [f["name"] for f in first["items"]] == names[:2]
    assert [f["name"] for f in third["items"]] == names[4:]
    assert first["pagination"] == {"total": 5, "page": 1, "limit": 2}
    assert [f["name"] for f in newest["items"]] == [names[-1]]
    assert filtered["pagination"]["total"] == 0
    assert bad_sort.status_code == 422
