"""Who may call what on knowledge files: every route against every persona, as one table.

The foundation's matrix leaves ``/api/files`` to this one. Every case gets a fresh world: the
``owner`` (a builder) has a project (``{project}``) with one uploaded file (``{file}``).
Columns: ``anonymous``, ``end_user``, ``owner``, ``other_builder``, ``super_admin``.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI

from app.core.runtime import runtime
from tests.factories import Account, create_project, signed_in
from tests.files.steps import upload
from tests.matrix import (
    actor_for,
    assert_error_shape,
    assert_matrix_covers,
    event_count,
    matrix_cases,
    module_app,
    module_client,
)

# fmt: off
MATRIX: dict[str, tuple[int, int, int, int, int]] = {
    #                                          anonymous  end_user  owner  other_builder  admin
    "POST /api/files/upload":                 (401,       404,      201,   404,           201),
    "POST /api/files/process":                (401,       404,      202,   404,           202),
    "GET /api/files/project/{project}":       (401,       404,      200,   404,           200),
    "GET /api/files/{file}":                  (401,       404,      200,   404,           200),
    "GET /api/files/{file} (download)":       (401,       404,      200,   404,           200),
    "DELETE /api/files/{file}":               (401,       404,      204,   404,           204),
}
# fmt: on

CODES: dict[str, dict[str, str]] = {
    "POST /api/files/upload": dict.fromkeys(("end_user", "other_builder"), "project_not_found"),
    "GET /api/files/project/{project}": dict.fromkeys(("end_user", "other_builder"), "project_not_found"),
    **{
        endpoint: dict.fromkeys(("end_user", "other_builder"), "file_not_found")
        for endpoint in (
            "POST /api/files/process",
            "GET /api/files/{file}",
            "GET /api/files/{file} (download)",
            "DELETE /api/files/{file}",
        )
    },
}

CONTENT = b"Kayaks float. Paddles push water.\n"


@dataclass
class World:
    owner: Account
    project: UUID
    file: str
    actor: Account | None


app = module_app()
client = module_client()


async def make_world(client: httpx.AsyncClient, persona: str) -> World:
    owner = await signed_in(client, "builder")
    project = await create_project(owner)
    file = await upload(client, owner, project, "notes.txt", CONTENT, process=False)
    return World(owner, project, file["id"], await actor_for(client, persona, owner=owner))


async def call(client: httpx.AsyncClient, endpoint: str, world: World) -> httpx.Response:
    headers = world.actor.headers if world.actor else {}
    if endpoint == "POST /api/files/upload":
        return await client.post(
            "/api/files/upload",
            data={"projectId": str(world.project)},
            files={"file": ("more.md", b"# More\n\nText.", "text/markdown")},
            headers=headers,
        )
    if endpoint == "POST /api/files/process":
        return await client.post("/api/files/process", json={"fileId": world.file}, headers=headers)
    method, template = endpoint.split()[:2]
    path = template.format(project=world.project, file=world.file)
    params = {"download": "1"} if endpoint.endswith("(download)") else None
    return await client.request(method, path, params=params, headers=headers)


@pytest.mark.parametrize(("endpoint", "persona", "expected"), matrix_cases(MATRIX))
async def test_persona_gets_the_status_the_matrix_promises(
    client: httpx.AsyncClient, endpoint: str, persona: str, expected: int
) -> None:
    world = await make_world(client, persona)
    events_before = await event_count()

    response = await call(client, endpoint, world)

    assert response.status_code == expected, response.text
    if 400 <= expected < 500:
        error = assert_error_shape(response)
        wanted = "not_authenticated" if expected == 401 else CODES[endpoint][persona]
        assert error["code"] == wanted, error
        assert await event_count() == events_before, "a refused request must change nothing"
    elif endpoint.startswith("GET"):
        assert await event_count() == events_before, "reading must change nothing"
    else:
        assert await event_count() > events_before, "a change must be recorded"
    if endpoint.endswith("(download)") and expected == 200:
        assert response.content == CONTENT


def test_matrix_covers_every_files_route(app: FastAPI) -> None:
    assert_matrix_covers(app, MATRIX, lambda path: path.startswith("/api/files"))
    assert set(CODES) <= set(MATRIX)


async def test_someone_elses_file_looks_exactly_like_a_missing_one(client: httpx.AsyncClient) -> None:
    world = await make_world(client, "other_builder")
    assert world.actor is not None

    for path in ("/api/files/{}", "/api/files/{}?download=1"):
        theirs = await client.get(path.format(world.file), headers=world.actor.headers)
        missing = await client.get(path.format(uuid4()), headers=world.actor.headers)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == missing.json()
    theirs = await client.post("/api/files/process", json={"fileId": world.file}, headers=world.actor.headers)
    missing = await client.post(
        "/api/files/process", json={"fileId": str(uuid4())}, headers=world.actor.headers
    )
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()


def stored_objects() -> list[Path]:
    return [p for p in runtime().settings.local_files_dir().rglob("*") if p.is_file()]


async def test_uploading_into_someone_elses_project_stores_nothing(client: httpx.AsyncClient) -> None:
    world = await make_world(client, "other_builder")
    assert world.actor is not None
    before = await client.get(f"/api/files/project/{world.project}", headers=world.owner.headers)
    objects = stored_objects()

    for order in ("project first", "file first"):
        fields: list[Any] = [
            ("projectId", (None, str(world.project))),
            ("file", ("x.txt", b"intruder", "text/plain")),
        ]
        if order == "file first":
            fields.reverse()
        response = await client.post("/api/files/upload", files=fields, headers=world.actor.headers)
        assert response.status_code == 404, response.text

    after = await client.get(f"/api/files/project/{world.project}", headers=world.owner.headers)
    assert after.json()["pagination"]["total"] == before.json()["pagination"]["total"] == 1
    assert stored_objects() == objects, "the bytes sent before the check must be deleted"
