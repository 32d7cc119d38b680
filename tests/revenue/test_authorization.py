"""Who may call which revenue endpoint: every route against every persona, as one table
(the revenue routes are left out of tests/test_authorization.py's matrix)."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import Account, signed_in
from tests.matrix import (
    actor_for,
    assert_error_shape,
    assert_matrix_covers,
    event_count,
    matrix_cases,
    module_app,
    module_client,
)
from tests.revenue.journey import buy, published_project

# fmt: off
MATRIX: dict[str, tuple[int, int, int, int, int]] = {
    #                                                      anonymous end_user owner other_builder super_admin
    "POST /api/revenue/calculate":                          (401,     403,     200,  200,          200),
    "POST /api/revenue/calculate (builderId: owner)":       (401,     403,     200,  404,          200),
    "POST /api/revenue/calculate (projectId: project)":     (401,     403,     200,  404,          200),
    "POST /api/revenue/calculate (builderId: unknown)":     (401,     403,     404,  404,          404),
    "POST /api/revenue/distribute":                         (401,     403,     403,  403,          200),
    "GET /api/revenue/user/{owner}":                        (401,     404,     200,  404,          200),
    "GET /api/revenue/user/{me}":                           (401,     200,     200,  200,          200),
    "GET /api/revenue/user/{unknown}":                      (401,     404,     404,  404,          404),
    "GET /api/revenue/project/{project}":                   (401,     404,     200,  404,          200),
    "GET /api/revenue/project/{unknown}":                   (401,     404,     404,  404,          404),
}
# fmt: on

UNKNOWN = uuid4()


@dataclass
class World:
    owner: Account
    project: UUID
    actor: Account | None

    @property
    def me(self) -> Account:
        return self.actor or self.owner


BODIES: dict[str, Callable[[World], dict[str, Any]]] = {
    "POST /api/revenue/calculate": lambda _: {},
    "POST /api/revenue/calculate (builderId: owner)": lambda w: {"builderId": str(w.owner.id)},
    "POST /api/revenue/calculate (projectId: project)": lambda w: {"projectId": str(w.project)},
    "POST /api/revenue/calculate (builderId: unknown)": lambda _: {"builderId": str(UNKNOWN)},
}


app = module_app(payout_settlement_delay_days=0)
client = module_client()


async def _world(client: httpx.AsyncClient, persona: str) -> World:
    owner = await signed_in(client, "builder")
    project = await published_project(client, owner)
    await buy(client, project)
    return World(owner=owner, project=project, actor=await actor_for(client, persona, owner=owner))


@pytest.mark.parametrize(("endpoint", "persona", "expected"), matrix_cases(MATRIX))
async def test_persona_gets_the_status_the_matrix_promises(
    client: httpx.AsyncClient, endpoint: str, persona: str, expected: int
) -> None:
    world = await _world(client, persona)
    method, template = endpoint.split()[:2]
    path = template.format(owner=world.owner.id, me=world.me.id, project=world.project, unknown=UNKNOWN)
    headers = dict(world.actor.headers) if world.actor else {}
    if endpoint.endswith("/distribute"):
        headers["Idempotency-Key"] = str(uuid4())
    body = BODIES[endpoint](world) if endpoint in BODIES else None
    events_before = await event_count()

    response = await client.request(method, path, json=body, headers=headers)

    assert response.status_code == expected, response.text
    if expected >= 400:
        assert_error_shape(response)
        assert await event_count() == events_before, "a refused request must change nothing"
    if expected == 200 and "{owner}" in template:
        assert response.json()["userId"] == str(world.owner.id)
        assert response.json()["totals"][0]["earnedMinor"] > 0
    if expected == 200 and "{project}" in template:
        assert response.json()["projectId"] == str(world.project)
        assert response.json()["totals"][0]["salesCount"] == 1


async def test_a_builder_sees_only_their_own_sales_in_calculate(client: httpx.AsyncClient) -> None:
    owner = await signed_in(client, "builder")
    other = await signed_in(client, "builder")
    await buy(client, await published_project(client, owner))

    mine = await client.post("/api/revenue/calculate", json={}, headers=owner.headers)
    theirs = await client.post("/api/revenue/calculate", json={}, headers=other.headers)

    assert mine.json()["totals"][0]["salesCount"] == 1
    assert theirs.json()["totals"] == []
    assert theirs.json()["builderId"] == str(other.id)


def test_matrix_covers_every_revenue_route(app: FastAPI) -> None:
    assert_matrix_covers(app, MATRIX, lambda path: path.startswith("/api/revenue"))
    assert set(BODIES) <= set(MATRIX)
