"""Who may chat with a project and read its conversations: every route against every persona.

Each case gets a fresh world: a builder (``owner``) with an offline project (``{project}``) and
one conversation (``{chat}``). Only the owner and administrators get in; everyone else sees the
project as missing (404), never forbidden, so project ids do not leak.
"""

from dataclasses import dataclass
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.core.db import sessionmaker
from app.models import ChatMessage, OutboxEvent, ProjectChat
from tests.factories import Account, create_project, signed_in
from tests.matrix import (
    actor_for,
    assert_error_shape,
    assert_matrix_covers,
    matrix_cases,
    module_app,
    module_client,
)

# fmt: off
MATRIX: dict[str, tuple[int, int, int, int, int]] = {
    #                                                   anonymous  end_user  owner  other_builder  admin
    "POST /api/projects/{project}/chat":                (401,       404,      200,   404,           200),
    "GET /api/projects/{project}/chats":                (401,       404,      200,   404,           200),
    "GET /api/projects/{project}/chats/{chat}":         (401,       404,      200,   404,           200),
    "DELETE /api/projects/{project}/chats/{chat}":      (401,       404,      204,   404,           204),
}
# fmt: on


@dataclass
class World:
    owner: Account
    project: UUID
    chat: str
    actor: Account | None


app = module_app()
client = module_client()


async def make_world(client: httpx.AsyncClient, persona: str) -> World:
    owner = await signed_in(client, "builder")
    project = await create_project(owner, name="Helpdesk")
    first = await client.post(f"/api/projects/{project}/chat", json={"message": "Hi"}, headers=owner.headers)
    assert first.status_code == 200, first.text
    actor = await actor_for(client, persona, owner=owner)
    return World(owner, project, first.json()["conversationId"], actor)


async def state() -> tuple[int, int, int]:
    async with sessionmaker()() as db:
        return (
            (await db.execute(select(func.count()).select_from(ProjectChat))).scalar_one(),
            (await db.execute(select(func.count()).select_from(ChatMessage))).scalar_one(),
            (await db.execute(select(func.count()).select_from(OutboxEvent))).scalar_one(),
        )


@pytest.mark.parametrize(("endpoint", "persona", "expected"), matrix_cases(MATRIX))
async def test_persona_gets_the_status_the_matrix_promises(
    client: httpx.AsyncClient, endpoint: str, persona: str, expected: int
) -> None:
    world = await make_world(client, persona)
    method, template = endpoint.split()
    path = template.format(project=world.project, chat=world.chat)
    body = {"message": "What can you do?"} if method == "POST" else None
    before = await state()

    response = await client.request(
        method, path, json=body, headers=world.actor.headers if world.actor else {}
    )

    assert response.status_code == expected, response.text
    if expected >= 400:
        code = assert_error_shape(response)["code"]
        assert code == ("not_authenticated" if expected == 401 else "project_not_found")
        assert await state() == before, "a refused request must change nothing"
    if method == "GET":
        assert await state() == before, "reading must change nothing"
        if expected == 200 and "{chat}" in template:
            assert response.json()["id"] == world.chat
        elif expected == 200:
            assert [c["id"] for c in response.json()["items"]] == [world.chat]


async def test_someone_elses_project_chat_looks_exactly_like_a_missing_one(client: httpx.AsyncClient) -> None:
    world = await make_world(client, "other_builder")
    assert world.actor is not None

    for path in (f"/api/projects/{world.project}/chats/{world.chat}", f"/api/projects/{world.project}/chats"):
        theirs = await client.get(path, headers=world.actor.headers)
        missing = await client.get(
            path.replace(str(world.project), str(uuid4())), headers=world.actor.headers
        )
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == missing.json()


async def test_a_conversation_is_only_reachable_through_its_own_project(client: httpx.AsyncClient) -> None:
    world = await make_world(client, "owner")
    other_project = await create_project(world.owner, name="Second")

    response = await client.get(
        f"/api/projects/{other_project}/chats/{world.chat}", headers=world.owner.headers
    )

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "chat_not_found"


def test_matrix_covers_every_chat_route(app: FastAPI) -> None:
    # The widget's chat (/widget/v1/chat) is the widgets domain's, in its own matrix.
    assert_matrix_covers(app, MATRIX, lambda path: "/chat" in path and path.startswith("/api/"))
