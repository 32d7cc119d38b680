"""Who may call what on the marketplace: every route against every persona, as one table.

The foundation's matrix (``tests/test_authorization.py``) leaves ``/api/marketplace`` to this
one, because its resources need a richer world. Every case gets a fresh one:

* ``owner``: a builder with a ``ready`` project (``{ready}``, never published), a published
  listing (``{listed}``, 19.00 USD) and a held one (``{held}``);
* ``buyer``: an end user who bought ``{listed}`` (``{purchase}``, completed).

Personas (the columns of ``MATRIX``): ``anonymous`` (no token), ``end_user`` (the buyer),
``owner``, ``other_builder`` (a builder who owns nothing here), ``super_admin``.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI

from app.auth.permissions import Perm
from app.core.db import commit, sessionmaker
from app.core.principal import Principal
from app.marketplace.schemas import ListingStatusUpdate
from app.marketplace.service import marketplace_service
from tests.factories import Account, signed_in
from tests.marketplace.steps import buy, listed_project, ready_project
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

VIEWS = ("listing.viewed",)

# ``{me}`` is the caller's own user id (the owner's for anonymous callers).
# fmt: off
MATRIX: dict[str, tuple[int, int, int, int, int]] = {
    #                                                      anonymous  end_user  owner  other_builder  admin
    "GET /api/marketplace/projects":                      (200,       200,      200,   200,           200),
    "GET /api/marketplace/projects/{listed}":             (200,       200,      200,   200,           200),
    "GET /api/marketplace/projects/{held}":               (404,       404,      200,   404,           200),
    "GET /api/marketplace/projects/{ready}":              (404,       404,      404,   404,           404),
    "POST /api/marketplace/projects/{ready}/publish":     (401,       403,      201,   404,           403),
    "POST /api/marketplace/projects/{listed}/publish":    (401,       403,      409,   404,           403),
    "PUT /api/marketplace/projects/{listed}/status":      (401,       403,      403,   403,           200),
    "PUT /api/marketplace/projects/{held}/status":        (401,       403,      403,   403,           200),
    "POST /api/marketplace/purchase (listed)":            (401,       409,      403,   201,           403),
    "POST /api/marketplace/purchase (held)":              (401,       409,      409,   409,           403),
    "POST /api/marketplace/purchase (not listed)":        (401,       404,      404,   404,           403),
    "GET /api/marketplace/purchases/user/{buyer}":        (401,       200,      404,   404,           200),
    "GET /api/marketplace/purchases/user/{me}":           (401,       200,      200,   200,           200),
    "POST /api/marketplace/purchases/{purchase}/refund":  (401,       403,      403,   403,           200),
    "GET /api/marketplace/analytics":                     (401,       403,      200,   200,           200),
}
# fmt: on

# The error code behind each refusal that is not plain authentication (401: not_authenticated).
CODES: dict[str, dict[str, str]] = {
    "GET /api/marketplace/projects/{held}": dict.fromkeys(
        ("anonymous", "end_user", "other_builder"), "listing_not_found"
    ),
    "GET /api/marketplace/projects/{ready}": dict.fromkeys(PERSONAS, "listing_not_found"),
    "POST /api/marketplace/projects/{ready}/publish": {
        "end_user": "permission_denied",
        "other_builder": "project_not_found",
        "super_admin": "permission_denied",
    },
    "POST /api/marketplace/projects/{listed}/publish": {
        "end_user": "permission_denied",
        "owner": "project_not_ready",  # it is published
        "other_builder": "project_not_found",
        "super_admin": "permission_denied",
    },
    "PUT /api/marketplace/projects/{listed}/status": dict.fromkeys(
        ("end_user", "owner", "other_builder"), "permission_denied"
    ),
    "PUT /api/marketplace/projects/{held}/status": dict.fromkeys(
        ("end_user", "owner", "other_builder"), "permission_denied"
    ),
    "POST /api/marketplace/purchase (listed)": {
        "end_user": "already_purchased",
        "owner": "cannot_buy_own",
        "super_admin": "permission_denied",
    },
    "POST /api/marketplace/purchase (held)": {
        **dict.fromkeys(("end_user", "owner", "other_builder"), "listing_held"),
        "super_admin": "permission_denied",
    },
    "POST /api/marketplace/purchase (not listed)": {
        **dict.fromkeys(("end_user", "owner", "other_builder"), "listing_not_found"),
        "super_admin": "permission_denied",
    },
    "GET /api/marketplace/purchases/user/{buyer}": dict.fromkeys(
        ("owner", "other_builder"), "user_not_found"
    ),
    "POST /api/marketplace/purchases/{purchase}/refund": dict.fromkeys(
        ("end_user", "owner", "other_builder"), "permission_denied"
    ),
    "GET /api/marketplace/analytics": {"end_user": "permission_denied"},
}


@dataclass
class World:
    owner: Account
    buyer: Account
    ready: UUID
    listed: UUID
    held: UUID
    purchase: str
    actor: Account | None  # None: anonymous

    @property
    def me(self) -> Account:
        return self.actor or self.owner


BODIES: dict[str, Callable[[World], dict[str, Any]]] = {
    "POST /api/marketplace/projects/{ready}/publish": lambda _: {
        "priceMinor": 900,
        "description": "Drafts sales emails",
        "category": "sales",
    },
    "POST /api/marketplace/projects/{listed}/publish": lambda _: {
        "priceMinor": 900,
        "description": "Again",
        "category": "sales",
    },
    "PUT /api/marketplace/projects/{listed}/status": lambda _: {"status": "held", "reason": "Reported"},
    "PUT /api/marketplace/projects/{held}/status": lambda _: {"status": "active", "reason": "Cleared"},
    "POST /api/marketplace/purchase (listed)": lambda w: {"projectId": str(w.listed)},
    "POST /api/marketplace/purchase (held)": lambda w: {"projectId": str(w.held)},
    "POST /api/marketplace/purchase (not listed)": lambda w: {"projectId": str(w.ready)},
    "POST /api/marketplace/purchases/{purchase}/refund": lambda _: {"reason": "Asked for it"},
}

CASES = matrix_cases(MATRIX)


app = module_app()
client = module_client()


async def hold_as_platform(project_id: UUID) -> None:
    """Arrange: the listing is held (by the platform itself, so no admin account is needed)."""
    async with sessionmaker()() as db:
        platform = Principal(
            user_id=UUID(int=0),
            session_id=UUID(int=0),
            persona="super_admin",
            personas=("super_admin",),
            permissions=frozenset({Perm.PLATFORM_ADMIN}),
        )
        await marketplace_service.set_status(
            db, platform, project_id, ListingStatusUpdate(status="held", reason="Arranged")
        )
        await commit(db)


async def make_world(client: httpx.AsyncClient, persona: str) -> World:
    owner = await signed_in(client, "builder")
    buyer = await signed_in(client, "end_user")
    ready = await ready_project(client, owner, name="Sales Drafter")
    listed = await listed_project(client, owner, name="Support Copilot")
    held = await listed_project(client, owner, name="Held Helper")
    await hold_as_platform(held)
    purchase = await buy(client, buyer, listed)
    actor = await actor_for(client, persona, owner=owner, end_user=buyer)
    return World(owner, buyer, ready, listed, held, purchase["id"], actor)


@pytest.mark.parametrize(("endpoint", "persona", "expected"), CASES)
async def test_persona_gets_the_status_the_matrix_promises(
    client: httpx.AsyncClient, endpoint: str, persona: str, expected: int
) -> None:
    world = await make_world(client, persona)
    method, template = endpoint.split()[:2]
    path = template.format(
        ready=world.ready,
        listed=world.listed,
        held=world.held,
        purchase=world.purchase,
        buyer=world.buyer.id,
        me=world.me.id,
    )
    body = BODIES[endpoint](world) if endpoint in BODIES else None
    headers = {**(world.actor.headers if world.actor else {}), "Idempotency-Key": str(uuid4())}
    # A listing page counts a view (analytics, not a change): reads are checked without it.
    events_before = await event_count(ignoring=VIEWS)
    views_before = await event_count() - events_before

    response = await client.request(method, path, json=body, headers=headers)

    assert response.status_code == expected, response.text
    if 400 <= expected < 500:
        error = assert_error_shape(response)
        wanted = "not_authenticated" if expected == 401 else CODES[endpoint][persona]
        assert error["code"] == wanted, error
        assert await event_count() == events_before + views_before, "a refused request must change nothing"
    if expected == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if method == "GET":
        assert await event_count(ignoring=VIEWS) == events_before, "reading must change nothing"
    elif expected < 300:
        assert await event_count(ignoring=VIEWS) > events_before, "a change must be recorded"
    if method == "GET" and expected == 200 and "{" in template:
        # What is returned is what was asked for: that listing, that user's purchases.
        returned = response.json()
        asked = UUID(path.rsplit("/", 1)[-1])
        if "items" in returned:
            assert all(item["userId"] == str(asked) for item in returned["items"])
            assert returned["pagination"]["total"] == (1 if asked == world.buyer.id else 0)
        else:
            assert returned["projectId"] == str(asked)


def test_matrix_covers_every_marketplace_route(app: FastAPI) -> None:
    assert_matrix_covers(app, MATRIX, lambda path: path.startswith("/api/marketplace"))
    assert set(BODIES) <= set(MATRIX)
    assert set(CODES) <= set(MATRIX)


async def test_a_held_listing_looks_exactly_like_a_missing_one_to_the_public(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world(client, "other_builder")
    assert world.actor is not None

    for headers in ({}, world.actor.headers, world.buyer.headers):
        held = await client.get(f"/api/marketplace/projects/{world.held}", headers=headers)
        missing = await client.get(f"/api/marketplace/projects/{uuid4()}", headers=headers)
        assert held.status_code == missing.status_code == 404
        assert held.json() == missing.json()


async def test_another_builders_project_cannot_be_published_and_looks_missing(
    client: httpx.AsyncClient,
) -> None:
    world = await make_world(client, "other_builder")
    assert world.actor is not None
    body = BODIES["POST /api/marketplace/projects/{ready}/publish"](world)

    theirs = await client.post(
        f"/api/marketplace/projects/{world.ready}/publish", json=body, headers=world.actor.headers
    )
    missing = await client.post(
        f"/api/marketplace/projects/{uuid4()}/publish", json=body, headers=world.actor.headers
    )

    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()
    still = await client.get(f"/api/marketplace/projects/{world.ready}", headers=world.owner.headers)
    assert still.status_code == 404, "the project must not have been listed"


async def test_someone_elses_purchases_look_exactly_like_a_missing_user(client: httpx.AsyncClient) -> None:
    world = await make_world(client, "other_builder")
    assert world.actor is not None

    for snoop in (world.actor, world.owner):
        theirs = await client.get(f"/api/marketplace/purchases/user/{world.buyer.id}", headers=snoop.headers)
        missing = await client.get(f"/api/marketplace/purchases/user/{uuid4()}", headers=snoop.headers)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json() == missing.json()


async def test_moderation_trail_is_shown_to_the_owner_and_admins_only(client: httpx.AsyncClient) -> None:
    world = await make_world(client, "super_admin")
    assert world.actor is not None
    path = f"/api/marketplace/projects/{world.listed}"
    hold = await client.put(
        f"{path}/status", json={"status": "held", "reason": "Spam report 42"}, headers=world.actor.headers
    )
    assert hold.status_code == 200, hold.text
    reinstate = await client.put(
        f"{path}/status", json={"status": "active", "reason": "Report dismissed"}, headers=world.actor.headers
    )
    assert reinstate.status_code == 200, reinstate.text

    trails = {}
    for who, headers in [
        ("anonymous", {}),
        ("buyer", world.buyer.headers),
        ("owner", world.owner.headers),
        ("admin", world.actor.headers),
    ]:
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        trails[who] = [(a["fromStatus"], a["toStatus"], a["reason"]) for a in response.json()["audit"]]

    assert trails["anonymous"] == trails["buyer"] == []
    assert (
        trails["owner"]
        == trails["admin"]
        == [
            (None, "active", None),
            ("active", "held", "Spam report 42"),
            ("held", "active", "Report dismissed"),
        ]
    )
