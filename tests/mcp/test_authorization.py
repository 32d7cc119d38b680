"""Who may call what on MCP clients: every route against every persona, as one table.

The foundation's matrix leaves ``/api/mcp-clients`` to this one. Every case gets a fresh world:
a super admin's client ``{client}`` (unreachable, so a test fails fast; with a secret header)
that the ``owner`` builder has attached to a project.

Personas (the columns of ``MATRIX``): ``anonymous`` (no token), ``end_user``, ``owner`` (the
builder using the client), ``other_builder``, ``super_admin``.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import Account, create_project, signed_in
from tests.matrix import (
    PERSONAS,
    actor_for,
    assert_error_shape,
    assert_matrix_covers,
    event_count,
    matrix_cases,
    module_app,
    module_client,
)
from tests.mcp.conftest import LOCAL

SECRET = "Bearer matrix-secret-5e6f7a"

# fmt: off
MATRIX: dict[str, tuple[int, int, int, int, int]] = {
    #                                                  anonymous  end_user  owner  other_builder  admin
    "GET /api/mcp-clients":                           (401,       403,      200,   200,           200),
    "POST /api/mcp-clients":                          (401,       403,      403,   403,           201),
    "GET /api/mcp-clients/active":                    (401,       403,      200,   200,           200),
    "GET /api/mcp-clients/{client}":                  (401,       403,      200,   200,           200),
    "GET /api/mcp-clients/{missing}":                 (401,       403,      404,   404,           404),
    "PUT /api/mcp-clients/{client}":                  (401,       403,      403,   403,           200),
    "DELETE /api/mcp-clients/{client}":               (401,       403,      403,   403,           204),
    "POST /api/mcp-clients/{client}/test-connection": (401,       403,      403,   403,           200),
    "PUT /api/mcp-clients/{client}/status":           (401,       403,      403,   403,           200),
}
# fmt: on

# The error code behind each refusal that is not plain authentication (401: not_authenticated).
DENIED = dict.fromkeys(("end_user", "owner", "other_builder"), "permission_denied")
CODES: dict[str, dict[str, str]] = dict.fromkeys(MATRIX, DENIED)
CODES["GET /api/mcp-clients/{missing}"] = {
    "end_user": "permission_denied",
    **dict.fromkeys(("owner", "other_builder", "super_admin"), "mcp_client_not_found"),
}


@dataclass
class World:
    owner: Account
    client: str
    project: UUID
    actor: Account | None  # None: anonymous


BODIES: dict[str, Callable[[World], dict[str, Any]]] = {
    "POST /api/mcp-clients": lambda _: {
        "name": f"New {uuid4()}",
        "connectionType": "streamable_http",
        "connectionString": "https://93.184.216.34/mcp",
    },
    "PUT /api/mcp-clients/{client}": lambda _: {"description": "Changed"},
    "PUT /api/mcp-clients/{client}/status": lambda _: {"isActive": False},
}

CASES = matrix_cases(MATRIX)

app = module_app(**LOCAL)
client = module_client()


async def make_world(client: httpx.AsyncClient, persona: str) -> World:
    admin = await signed_in(client, "super_admin")
    owner = await signed_in(client, "builder")
    created = await client.post(
        "/api/mcp-clients",
        json={
            "name": f"Orders {uuid4()}",
            "connectionType": "streamable_http",
            "connectionString": "http://127.0.0.1:1/mcp",
            "headers": {"Authorization": SECRET},
        },
        headers=admin.headers,
    )
    assert created.status_code == 201, created.text
    project = await create_project(owner, name="Uses MCP", mcp_servers=[created.json()["id"]])
    actor = await actor_for(client, persona, owner=owner, super_admin=admin)
    return World(owner, created.json()["id"], project, actor)


@pytest.mark.parametrize(("endpoint", "persona", "expected"), CASES)
async def test_persona_gets_the_status_the_matrix_promises(
    client: httpx.AsyncClient, endpoint: str, persona: str, expected: int
) -> None:
    world = await make_world(client, persona)
    method, template = endpoint.split()[:2]
    path = template.format(client=world.client, missing=uuid4())
    body = BODIES[endpoint](world) if endpoint in BODIES else None
    events_before = await event_count()

    response = await client.request(
        method, path, json=body, headers=world.actor.headers if world.actor else {}
    )

    assert response.status_code == expected, response.text
    assert SECRET not in response.text
    if 400 <= expected < 500:
        error = assert_error_shape(response)
        wanted = "not_authenticated" if expected == 401 else CODES[endpoint][persona]
        assert error["code"] == wanted, error
        assert await event_count() == events_before, "a refused request must change nothing"
    if method == "GET":
        assert await event_count() == events_before, "reading must change nothing"
    elif expected < 300:
        assert await event_count() > events_before, "a change must be recorded"
    if method == "GET" and expected == 200 and "{client}" in template:
        returned = response.json()
        assert returned["id"] == world.client
        assert returned["headers"] == {"Authorization": "****"}


def test_matrix_covers_every_mcp_client_route(app: FastAPI) -> None:
    assert_matrix_covers(app, MATRIX, lambda path: path.startswith("/api/mcp-clients"))
    assert set(BODIES) <= set(MATRIX)
    assert set(PERSONAS) == {"anonymous", "end_user", "owner", "other_builder", "super_admin"}
