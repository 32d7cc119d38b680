"""Who may read which analytics: every analytics route against every persona, as one table.

The foundation's matrix (``tests/test_authorization.py``) leaves analytics routes to this one,
because a widget exists only in the marts: every case publishes a version in which the owner's
project has a widget ``{widget}`` owned by the end user.

Personas (the columns of ``MATRIX``): ``anonymous`` (no token), ``end_user`` (the widget's
owner), ``owner`` (the builder of ``{project}``), ``other_builder``, ``super_admin``.
"""

from dataclasses import dataclass
from datetime import date
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.core.runtime import runtime
from tests.analytics.marts import publish, usage_rows
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

# ``{owner}`` the builder, ``{me}`` the caller (the owner for anonymous callers).
# fmt: off
MATRIX: dict[str, tuple[int, int, int, int, int]] = {
    #                                                 anonymous  end_user  owner  other_builder  admin
    "GET /api/analytics/platform":                   (401,       403,      403,   403,           200),
    "GET /api/analytics/user/{owner}":               (401,       404,      200,   404,           200),
    "GET /api/analytics/user/{me}":                  (401,       200,      200,   200,           200),
    "GET /api/users/{owner}/analytics":              (401,       404,      200,   404,           200),
    "GET /api/analytics/projects/{project}":         (401,       404,      200,   404,           200),
    "GET /api/projects/{project}/analytics":         (401,       404,      200,   404,           200),
    "GET /api/analytics/widgets/{widget}":           (401,       200,      200,   404,           200),
    "GET /api/widgets/{widget}/analytics":           (401,       200,      200,   404,           200),
    "GET /api/analytics/widgets/{unknown}":          (401,       404,      404,   404,           200),
    "GET /api/analytics/revenue":                    (401,       403,      200,   200,           200),
    "GET /api/analytics/revenue?builderId={owner}":  (401,       403,      200,   404,           200),
    "GET /api/analytics/usage":                      (401,       200,      200,   200,           200),
}
# fmt: on

CODES: dict[str, dict[str, str]] = {
    "GET /api/analytics/platform": dict.fromkeys(("end_user", "owner", "other_builder"), "permission_denied"),
    "GET /api/analytics/user/{owner}": dict.fromkeys(("end_user", "other_builder"), "user_not_found"),
    "GET /api/users/{owner}/analytics": dict.fromkeys(("end_user", "other_builder"), "user_not_found"),
    "GET /api/analytics/projects/{project}": dict.fromkeys(
        ("end_user", "other_builder"), "project_not_found"
    ),
    "GET /api/projects/{project}/analytics": dict.fromkeys(
        ("end_user", "other_builder"), "project_not_found"
    ),
    "GET /api/analytics/widgets/{widget}": {"other_builder": "widget_not_found"},
    "GET /api/widgets/{widget}/analytics": {"other_builder": "widget_not_found"},
    "GET /api/analytics/widgets/{unknown}": dict.fromkeys(
        ("end_user", "owner", "other_builder"), "widget_not_found"
    ),
    "GET /api/analytics/revenue": {"end_user": "permission_denied"},
    "GET /api/analytics/revenue?builderId={owner}": {
        "end_user": "permission_denied",
        "other_builder": "user_not_found",
    },
}


@dataclass
class World:
    owner: Account
    customer: Account
    project: UUID
    widget: UUID
    actor: Account | None

    @property
    def me(self) -> Account:
        return self.actor or self.owner


app = module_app()
client = module_client()


async def _world(client: httpx.AsyncClient, persona: str, settings: Settings) -> World:
    owner = await signed_in(client, "builder")
    customer = await signed_in(client, "end_user")
    project = await create_project(owner, name="Owner's app")
    widget = uuid4()
    day = date(2026, 3, 2)
    publish(
        settings.warehouse_dir,
        {
            "usage_by_period": usage_rows(
                [
                    {
                        "day": day,
                        "widget_id": widget,
                        "project_id": project,
                        "builder_id": owner.id,
                        "end_user_id": customer.id,
                        "messages": 3,
                    }
                ]
            )
        },
    )
    actor = await actor_for(client, persona, owner=owner, end_user=customer)
    return World(owner=owner, customer=customer, project=project, widget=widget, actor=actor)


@pytest.mark.parametrize(("endpoint", "persona", "expected"), matrix_cases(MATRIX))
async def test_persona_gets_the_status_the_matrix_promises(
    app: FastAPI, client: httpx.AsyncClient, endpoint: str, persona: str, expected: int
) -> None:
    world = await _world(client, persona, runtime().settings)
    method, template = endpoint.split()[:2]
    path = template.format(
        owner=world.owner.id, me=world.me.id, project=world.project, widget=world.widget, unknown=uuid4()
    )
    headers = world.actor.headers if world.actor else {}
    events_before = await event_count()

    response = await client.request(method, path, headers=headers)

    assert response.status_code == expected, response.text
    if expected == 200:
        assert response.json()["warehouse"] is not None
    else:
        error = assert_error_shape(response)
        wanted = "not_authenticated" if expected == 401 else CODES[endpoint][persona]
        assert error["code"] == wanted
    assert await event_count() == events_before, "reading analytics changes nothing"


def test_matrix_covers_every_analytics_route(app: FastAPI) -> None:
    assert_matrix_covers(
        app, MATRIX, lambda path: "analytics" in path and not path.startswith("/api/marketplace")
    )
    assert set(CODES) <= set(MATRIX)
    assert PERSONAS == ("anonymous", "end_user", "owner", "other_builder", "super_admin")
