"""Who may call what: every endpoint against every persona, as one table.

Personas (the columns of ``MATRIX``):

* ``anonymous``: no token;
* ``end_user``: a signed-in end user who owns nothing here;
* ``owner``: the builder who owns the resource (the project, or the user account itself);
* ``other_builder``: a signed-in builder who does not own it;
* ``super_admin``: a signed-in administrator.

Every case runs against a fresh owner with one project, so mutations never leak between cases.
The app is shared by the module (one start-up and cleanup, not one per case).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import PASSWORD, Account, create_project, events_of, signed_in, unique_email
from tests.matrix import (
    assert_error_shape,
    assert_matrix_covers,
    event_count,
    matrix_cases,
    module_app,
    module_client,
)

# What each persona gets from each endpoint. ``{owner}`` is the owning builder's user id,
# ``{project}`` their project, ``{me}`` the caller's own user id.
# fmt: off
MATRIX: dict[str, tuple[int, int, int, int, int]] = {
    #                                       anonymous  end_user  owner  other_builder  super_admin
    "POST /api/auth/login":                (200,       200,      200,   200,           200),
    "POST /api/auth/refresh-token":        (200,       200,      200,   200,           200),
    "POST /api/auth/logout":               (401,       204,      204,   204,           204),
    "GET /api/auth/me":                    (401,       200,      200,   200,           200),
    "PUT /api/auth/update-persona":        (401,       200,      200,   200,           200),
    "GET /api/users":                      (401,       403,      403,   403,           200),
    "POST /api/users (as builder)":        (201,       403,      403,   403,           201),
    "POST /api/users (as end_user)":       (201,       403,      403,   403,           201),
    "POST /api/users (as super_admin)":    (403,       403,      403,   403,           201),
    "GET /api/users/{owner}":              (401,       404,      200,   404,           200),
    "PUT /api/users/{owner}":              (401,       404,      200,   404,           200),
    "DELETE /api/users/{owner}":           (401,       404,      204,   404,           204),
    "GET /api/users/{owner}/projects":     (401,       404,      200,   404,           200),
    "PUT /api/users/{owner}/status":       (401,       403,      403,   403,           200),
    "PUT /api/users/{me}/status":          (401,       403,      403,   403,           409),
    "PUT /api/users/{owner}/subscription": (401,       404,      200,   404,           200),
    "GET /api/projects":                   (401,       200,      200,   200,           200),
    "POST /api/projects":                  (401,       403,      201,   201,           403),
    "GET /api/projects/user/{owner}":      (401,       404,      200,   404,           200),
    "GET /api/projects/{project}":         (401,       404,      200,   404,           200),
    "PUT /api/projects/{project}":         (401,       404,      200,   404,           200),
    "DELETE /api/projects/{project}":      (401,       404,      204,   404,           204),
    "PUT /api/projects/{project}/status":  (401,       404,      200,   404,           200),
    "GET /healthz":                        (200,       200,      200,   200,           200),
    "GET /readyz":                         (200,       200,      200,   200,           200),
    "GET /metrics":                        (200,       200,      200,   200,           200),
}
# fmt: on


@dataclass
class World:
    owner: Account
    project: UUID
    actor: Account | None  # None: anonymous

    @property
    def me(self) -> Account:
        """Whose credentials the caller uses: its own, or (anonymous) the owner's."""
        return self.actor or self.owner


def _sign_up(persona: str) -> Callable[[World], dict[str, Any]]:
    return lambda _: {"email": unique_email("new"), "password": PASSWORD, "name": "New", "persona": persona}


BODIES: dict[str, Callable[[World], dict[str, Any]]] = {
    "POST /api/auth/login": lambda w: {"email": w.me.email, "password": PASSWORD, "persona": w.me.persona},
    "POST /api/auth/refresh-token": lambda w: {"refreshToken": w.me.refresh_token},
    "PUT /api/auth/update-persona": lambda w: {"persona": w.me.persona},
    "POST /api/users (as builder)": _sign_up("builder"),
    "POST /api/users (as end_user)": _sign_up("end_user"),
    "POST /api/users (as super_admin)": _sign_up("super_admin"),
    "PUT /api/users/{owner}": lambda _: {"name": "Renamed"},
    "PUT /api/users/{owner}/status": lambda _: {"status": "suspended", "reason": "test"},
    "PUT /api/users/{me}/status": lambda _: {"status": "suspended"},
    "PUT /api/users/{owner}/subscription": lambda _: {"plan": "free"},
    "POST /api/projects": lambda _: {"name": "Another app"},
    "PUT /api/projects/{project}": lambda _: {"name": "Renamed app"},
    "PUT /api/projects/{project}/status": lambda _: {"status": "in_development"},
}

CASES = matrix_cases(MATRIX)


app = module_app()
client = module_client()


async def _world(client: httpx.AsyncClient, persona: str) -> World:
    owner = await signed_in(client, "builder")
    project = await create_project(owner, name="Owner's app")
    actors = {
        "anonymous": None,
        "owner": owner,
        "end_user": "end_user",
        "other_builder": "builder",
        "super_admin": "super_admin",
    }
    actor = actors[persona]
    if isinstance(actor, str):
        actor = await signed_in(client, actor)
    return World(owner=owner, project=project, actor=actor)


@pytest.mark.parametrize(("endpoint", "persona", "expected"), CASES)
async def test_persona_gets_the_status_the_matrix_promises(
    client: httpx.AsyncClient, endpoint: str, persona: str, expected: int
) -> None:
    world = await _world(client, persona)
    method, template = endpoint.split()[:2]
    path = template.format(owner=world.owner.id, me=world.me.id, project=world.project)
    body = BODIES[endpoint](world) if endpoint in BODIES else None
    headers = world.actor.headers if world.actor else {}
    events_before = await event_count()

    response = await client.request(method, path, json=body, headers=headers)

    assert response.status_code == expected, response.text
    if 400 <= expected < 500:
        assert_error_shape(response)
        assert await event_count() == events_before, "a refused request must change nothing"
    if expected == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if method == "GET" and expected == 200 and "{" in template:
        # A readable resource is the one asked for (not, say, the caller's own).
        returned = response.json()
        if "id" in returned:
            assert returned["id"] == path.rsplit("/", 1)[-1]
        else:
            assert all(item["userId"] == str(world.owner.id) for item in returned["items"])
            assert returned["pagination"]["total"] == 1


# Domains whose resources need a richer world (a published listing, a purchase...) keep their
# own matrix next to their tests, which checks its own route coverage.
OWN_MATRIX = (
    "/api/marketplace",
    "/api/revenue",
    "/api/billing",
    "/api/payments",
    "/api/analytics",
    "/api/files",
    "/api/mcp-clients",
    "/api/llm",
    "/api/widgets",
    "/widget/",
    "/api/notifications",
)


def _own_matrix(path: str) -> bool:
    # Analytics of a user, project or widget need a published warehouse: tests/analytics' matrix.
    # Project chats: tests/chat's matrix.
    return path.startswith(OWN_MATRIX) or path.endswith("/analytics") or "/chat" in path


def test_matrix_covers_every_route_of_the_app(app: FastAPI) -> None:
    assert_matrix_covers(app, MATRIX, lambda path: not _own_matrix(path))
    assert set(BODIES) <= set(MATRIX)


async def test_project_list_shows_builders_their_own_projects_and_admins_everyones(
    client: httpx.AsyncClient,
) -> None:
    owner = await signed_in(client, "builder")
    other = await signed_in(client, "builder")
    end_user = await signed_in(client, "end_user")
    admin = await signed_in(client, "super_admin")
    mine = str(await create_project(owner, name="Mine"))
    theirs = str(await create_project(other, name="Theirs"))

    async def ids(account: Account, query: str = "") -> set[str]:
        response = await client.get(f"/api/projects?limit=100{query}", headers=account.headers)
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.json()["items"]}

    assert await ids(owner) == {mine}
    assert await ids(other) == {theirs}
    assert await ids(end_user) == set()
    assert {mine, theirs} <= await ids(admin)
    assert await ids(admin, f"&userId={owner.id}") == {mine}


async def test_builder_cannot_list_another_builders_projects_through_the_user_filter(
    client: httpx.AsyncClient,
) -> None:
    owner = await signed_in(client, "builder")
    snoop = await signed_in(client, "builder")
    await create_project(owner)

    response = await client.get(f"/api/projects?userId={owner.id}", headers=snoop.headers)

    assert response.status_code == 404
    assert assert_error_shape(response)["code"] == "user_not_found"


async def test_other_builders_project_looks_exactly_like_a_missing_one(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    snoop = await signed_in(client, "builder")
    project = await create_project(owner)

    for method, suffix, body in [
        ("GET", "", None),
        ("PUT", "", {"name": "Mine now"}),
        ("DELETE", "", None),
        ("PUT", "/status", {"status": "archived"}),
    ]:
        theirs = await client.request(
            method, f"/api/projects/{project}{suffix}", json=body, headers=snoop.headers
        )
        missing = await client.request(
            method, f"/api/projects/{uuid4()}{suffix}", json=body, headers=snoop.headers
        )
        assert theirs.status_code == missing.status_code == 404, (method, suffix)
        assert theirs.json() == missing.json()

    unchanged = await client.get(f"/api/projects/{project}", headers=owner.headers)
    assert unchanged.json()["name"] == "Test project"
    assert unchanged.json()["status"] == "draft"


async def test_other_users_profile_looks_exactly_like_a_missing_one(client: httpx.AsyncClient) -> None:
    target = await signed_in(client, "end_user")
    snoop = await signed_in(client, "builder")

    theirs = await client.get(f"/api/users/{target.id}", headers=snoop.headers)
    missing = await client.get(f"/api/users/{uuid4()}", headers=snoop.headers)

    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()


async def test_admin_lists_every_user(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    end_user = await signed_in(client, "end_user")
    admin = await signed_in(client, "super_admin")

    response = await client.get("/api/users?limit=100", headers=admin.headers)

    assert response.status_code == 200
    emails = {user["email"] for user in response.json()["items"]}
    assert {builder.email, end_user.email, admin.email} <= emails


async def test_persona_switch_never_grants_a_persona_the_user_does_not_hold(
    client: httpx.AsyncClient,
) -> None:
    end_user = await signed_in(client, "end_user")

    response = await client.put(
        "/api/auth/update-persona", json={"persona": "super_admin"}, headers=end_user.headers
    )

    assert response.status_code == 403
    assert assert_error_shape(response)["code"] == "persona_not_held"
    me = await client.get("/api/auth/me", headers=end_user.headers)
    assert me.json()["activePersona"] == "end_user"
    assert "users:manage" not in me.json()["permissions"]


async def test_sign_up_cannot_smuggle_super_admin_in_the_extra_personas(client: httpx.AsyncClient) -> None:
    email = unique_email("smuggler")
    users_before = len(await events_of("user.created"))

    response = await client.post(
        "/api/users",
        json={
            "email": email,
            "password": PASSWORD,
            "name": "Smuggler",
            "persona": "builder",
            "personas": ["builder", "super_admin"],
        },
    )

    assert response.status_code == 403
    assert assert_error_shape(response)["code"] == "persona_not_allowed"
    assert len(await events_of("user.created")) == users_before
    login = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 401


async def test_user_cannot_grant_themselves_super_admin(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")

    response = await client.put(
        f"/api/users/{builder.id}", json={"personas": ["builder", "super_admin"]}, headers=builder.headers
    )

    assert response.status_code == 403
    assert assert_error_shape(response)["code"] == "persona_not_allowed"
    profile = await client.get(f"/api/users/{builder.id}", headers=builder.headers)
    assert profile.json()["personas"] == ["builder"]


async def test_a_user_pays_for_a_paid_plan_while_an_admin_assigns_one_free_of_charge(
    client: httpx.AsyncClient,
) -> None:
    builder = await signed_in(client, "builder")
    other = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")

    bought = await client.put(
        f"/api/users/{builder.id}/subscription", json={"plan": "pro"}, headers=builder.headers
    )
    granted = await client.put(
        f"/api/users/{other.id}/subscription", json={"plan": "pro"}, headers=admin.headers
    )

    assert bought.status_code == 200
    assert bought.json()["plan"] == "pro"
    assert bought.json()["invoiceId"] is not None  # paid on the local provider at once
    assert granted.status_code == 200
    assert granted.json().get("invoiceId") is None
    invoices = await client.get("/api/billing/invoices", headers=other.headers)
    assert invoices.json()["pagination"]["total"] == 0


async def test_admin_creates_an_account_of_any_persona_that_can_then_sign_in(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    email = unique_email("newadmin")

    response = await client.post(
        "/api/users",
        json={"email": email, "password": PASSWORD, "name": "Second admin", "persona": "super_admin"},
        headers=admin.headers,
    )

    assert response.status_code == 201, response.text
    assert response.json()["personas"] == ["super_admin"]
    login = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    assert login.json()["user"]["activePersona"] == "super_admin"
