"""Who may call what on notifications: every route of the domain (the realtime stream included)
against every persona, as one table.

The foundation's matrix leaves ``/api/notifications`` to this one. Every case gets a fresh world:
the owner (a builder) with one unread notification ``{notification}`` whose email died
``{dead_email}``, a queued broadcast ``{broadcast}``, and the caller with one unread notification
of their own. Personas are the shared ones (``tests/matrix.py``): ``anonymous``, ``end_user``,
``owner`` (the notification's recipient), ``other_builder``, ``super_admin``.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from app.core.db import commit, sessionmaker
from app.models import EmailDelivery, EmailStatus, OutboxEvent
from app.notifications.broadcast import create_broadcast
from app.notifications.service import Draft, deliver
from tests.factories import Account, create_user, signed_in
from tests.matrix import (
    PERSONAS,
    actor_for,
    assert_error_shape,
    assert_matrix_covers,
    matrix_cases,
    module_app,
    module_client,
)

# ``{me}`` is the caller's own user id (the owner's for anonymous callers).
# fmt: off
MATRIX: dict[str, tuple[int, ...]] = {
    #                                                            anon  end_user  owner  other_b  admin
    "POST /api/notifications/send":                             (401,  403,      403,   403,     201),
    "GET /api/notifications/user/{owner}":                      (401,  404,      200,   404,     200),
    "GET /api/notifications/user/{me}":                         (401,  200,      200,   200,     200),
    "PUT /api/notifications/{notification}/read":               (401,  404,      200,   404,     404),
    "PUT /api/notifications/{missing}/read":                    (401,  404,      404,   404,     404),
    "PUT /api/notifications/read-all":                          (401,  200,      200,   200,     200),
    "GET /api/notifications/preferences":                       (401,  200,      200,   200,     200),
    "PUT /api/notifications/preferences":                       (401,  200,      200,   200,     200),
    "GET /api/notifications/stream":                            (401,  200,      200,   200,     200),
    "GET /api/notifications/templates":                         (401,  403,      403,   403,     200),
    "GET /api/notifications/templates/{template}":              (401,  403,      403,   403,     200),
    "GET /api/notifications/templates/{unknown_type}":          (401,  403,      403,   403,     404),
    "PUT /api/notifications/templates/{template}":              (401,  403,      403,   403,     200),
    "POST /api/notifications/templates/{template}/preview":     (401,  403,      403,   403,     200),
    "POST /api/notifications/broadcast":                        (401,  403,      403,   403,     202),
    "GET /api/notifications/broadcasts/{broadcast}":            (401,  403,      403,   403,     200),
    "GET /api/notifications/broadcasts/{missing}":              (401,  403,      403,   403,     404),
    "GET /api/notifications/emails?status=dead":                (401,  403,      403,   403,     200),
    "POST /api/notifications/emails/{dead_email}/retry":        (401,  403,      403,   403,     200),
    "POST /api/notifications/emails/{missing}/retry":           (401,  403,      403,   403,     404),
}
# fmt: on

# The error code behind each refusal that is not plain authentication (401: not_authenticated)
# nor a persona's missing permission (403: permission_denied).
STRANGERS = ("end_user", "other_builder")
NOT_FOUND: dict[str, dict[str, str]] = {
    "GET /api/notifications/user/{owner}": dict.fromkeys(STRANGERS, "user_not_found"),
    "PUT /api/notifications/{notification}/read": dict.fromkeys(
        (*STRANGERS, "super_admin"), "notification_not_found"
    ),
    "PUT /api/notifications/{missing}/read": dict.fromkeys(PERSONAS, "notification_not_found"),
    "GET /api/notifications/templates/{unknown_type}": {"super_admin": "template_not_found"},
    "GET /api/notifications/broadcasts/{missing}": {"super_admin": "broadcast_not_found"},
    "POST /api/notifications/emails/{missing}/retry": {"super_admin": "email_not_found"},
}

# What a successful change records (reads record nothing).
RECORDS: dict[str, set[str]] = {
    "POST /api/notifications/send": {"notification.sent"},
    "PUT /api/notifications/{notification}/read": {"notification.read"},
    "PUT /api/notifications/read-all": {"notification.read"},
    "PUT /api/notifications/preferences": {"notification.preferences_updated"},
    "PUT /api/notifications/templates/{template}": {"notification_template.updated"},
    "POST /api/notifications/templates/{template}/preview": set(),
    "POST /api/notifications/broadcast": {"notification.broadcast_created"},
    "POST /api/notifications/emails/{dead_email}/retry": set(),
}


@dataclass
class World:
    owner: Account
    notification: UUID
    dead_email: UUID
    broadcast: UUID
    actor: Account | None  # None: anonymous

    @property
    def me(self) -> Account:
        return self.actor or self.owner


BODIES: dict[str, Callable[[World], dict[str, Any]]] = {
    "POST /api/notifications/send": lambda w: {"userId": str(w.owner.id), "title": "Hi", "message": "there"},
    "PUT /api/notifications/preferences": lambda _: {"sales": {"email": False}},
    # A new description every time: the module's cases share the template.
    "PUT /api/notifications/templates/{template}": lambda _: {"description": f"Edited {uuid4()}"},
    "POST /api/notifications/templates/{template}/preview": lambda _: {
        "variables": {"name": "Ada", "dashboardUrl": "https://bazaar.example/"}
    },
    "POST /api/notifications/broadcast": lambda _: {
        "audience": "builder",
        "title": "News",
        "message": "Hello",
    },
}

CASES = matrix_cases(MATRIX)

app = module_app()
client = module_client()


async def notify(user_id: UUID, kind: str = "announcement") -> UUID:
    variables = (
        {"name": "Owner", "dashboardUrl": "https://bazaar.example/"}
        if kind == "welcome"
        else {"title": "Yours", "message": "Only yours"}
    )
    async with sessionmaker()() as db:
        delivered = await deliver(db, [Draft(user_id=user_id, type=kind, variables=variables)])
        await commit(db)
    return delivered.notifications[0].id


async def make_world(client: httpx.AsyncClient, persona: str) -> World:
    owner = await signed_in(client, "builder")
    notification = await notify(owner.id, "welcome")
    admin = await create_user("super_admin")
    async with sessionmaker()() as db:
        dead_email = (
            await db.scalars(
                update(EmailDelivery)
                .where(EmailDelivery.user_id == owner.id)
                .values(status=EmailStatus.DEAD, attempts=5, last_error="550 mailbox unavailable")
                .returning(EmailDelivery.id)
            )
        ).one()
        broadcast, _ = await create_broadcast(
            db,
            admin_id=admin.id,
            audience="end_user",
            title="Queued",
            message="Not delivered: no worker runs here",
            send_email=False,
            idempotency_key=None,
        )
        await commit(db)
    actor = await actor_for(client, persona, owner=owner)
    if actor is not None and actor is not owner:
        await notify(actor.id)
    return World(owner, notification, dead_email, broadcast.id, actor)


async def open_stream(app: FastAPI, path: str, headers: dict[str, str]) -> httpx.Response:
    """Open the event stream straight on the app, read its status and first chunk, then hang up
    (httpx's ASGI transport would wait for the end of a stream that never ends)."""
    first_chunk = asyncio.Event()
    hang_up = asyncio.Event()
    started: dict[str, Any] = {}
    body = bytearray()
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            first_chunk.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 123),
        "server": ("testserver", 80),
    }
    call = asyncio.create_task(app(scope, receive, send))
    try:
        await asyncio.wait_for(first_chunk.wait(), timeout=30)
    finally:
        hang_up.set()
        await asyncio.wait_for(call, timeout=30)
    return httpx.Response(
        started["status"],
        headers=[(k.decode(), v.decode()) for k, v in started["headers"]],
        content=bytes(body),
    )


async def last_event() -> UUID | None:
    async with sessionmaker()() as db:
        stmt = select(OutboxEvent.event_id).order_by(OutboxEvent.event_id.desc()).limit(1)
        return await db.scalar(stmt)


async def event_types_after(last: UUID | None) -> set[str]:
    """The types of the events recorded after ``last`` (event ids are time-ordered)."""
    async with sessionmaker()() as db:
        stmt = select(OutboxEvent.type)
        if last is not None:
            stmt = stmt.where(OutboxEvent.event_id > last)
        return set((await db.scalars(stmt)).all())


@pytest.mark.parametrize(("endpoint", "persona", "expected"), CASES)
async def test_persona_gets_the_status_the_matrix_promises(
    app: FastAPI, client: httpx.AsyncClient, endpoint: str, persona: str, expected: int
) -> None:
    world = await make_world(client, persona)
    method, template = endpoint.split()[:2]
    path = template.format(
        owner=world.owner.id,
        me=world.me.id,
        notification=world.notification,
        dead_email=world.dead_email,
        broadcast=world.broadcast,
        missing=uuid4(),
        template="welcome",
        unknown_type="no.such",
    )
    body = BODIES[endpoint](world) if endpoint in BODIES else None
    headers = {**(world.actor.headers if world.actor else {}), "Idempotency-Key": str(uuid4())}
    events_before = await last_event()

    if endpoint == "GET /api/notifications/stream":
        response = await open_stream(app, path, headers)
    else:
        response = await client.request(method, path, json=body, headers=headers)

    assert response.status_code == expected, response.text
    recorded = await event_types_after(events_before)
    if 400 <= expected < 500:
        error = assert_error_shape(response)
        wanted = {401: "not_authenticated", 403: "permission_denied"}.get(expected)
        assert error["code"] == (wanted or NOT_FOUND[endpoint][persona]), error
        assert recorded == set(), "a refused request must change nothing"
    if expected == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if method == "GET":
        assert recorded == set(), "reading must change nothing"
    elif expected < 300:
        assert recorded == RECORDS[endpoint]
    if expected < 300:
        _check_answer(response, endpoint, world)


def _check_answer(response: httpx.Response, endpoint: str, world: World) -> None:
    """What is returned is what was asked for."""
    if endpoint == "GET /api/notifications/stream":
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.content.startswith(b": connected")
        return
    returned = response.json()
    if endpoint.startswith("GET /api/notifications/user/"):
        asked = response.url.path.rsplit("/", 1)[-1]
        assert [item["userId"] for item in returned["items"]] == [asked]
        assert returned["unreadCount"] == 1
    elif endpoint == "PUT /api/notifications/{notification}/read":
        assert (returned["id"], returned["read"]) == (str(world.notification), True)
    elif endpoint == "PUT /api/notifications/read-all":
        assert returned == {"updated": 1}
    elif endpoint == "POST /api/notifications/send":
        assert returned["notification"]["userId"] == str(world.owner.id)
    elif endpoint == "GET /api/notifications/broadcasts/{broadcast}":
        assert (returned["id"], returned["status"]) == (str(world.broadcast), "queued")
    elif endpoint == "POST /api/notifications/broadcast":
        assert (returned["audience"], returned["status"]) == ("builder", "queued")
    elif endpoint == "GET /api/notifications/emails?status=dead":
        assert str(world.dead_email) in {item["id"] for item in returned["items"]}
        assert {item["status"] for item in returned["items"]} == {"dead"}
    elif endpoint == "POST /api/notifications/emails/{dead_email}/retry":
        assert (returned["id"], returned["status"]) == (str(world.dead_email), "pending")
    elif endpoint == "PUT /api/notifications/preferences":
        assert returned["sales"] == {"inApp": True, "email": False}
    elif endpoint == "POST /api/notifications/templates/{template}/preview":
        assert returned["title"] == "Welcome to Bazaar, Ada"


def test_matrix_covers_every_notifications_route(app: FastAPI) -> None:
    assert_matrix_covers(app, MATRIX, lambda path: path.startswith("/api/notifications"))
    assert set(BODIES) <= set(MATRIX)
    assert set(NOT_FOUND) <= set(MATRIX)
    assert all(len(statuses) == len(PERSONAS) for statuses in MATRIX.values())
    changes = {e for e in MATRIX if e.split()[0] != "GET" and any(s < 300 for s in MATRIX[e])}
    assert changes == set(RECORDS)


async def test_an_admin_cannot_mark_a_users_notification_read(client: httpx.AsyncClient) -> None:
    """Administrators read anyone's inbox, but a read mark is the recipient's own."""
    world = await make_world(client, "super_admin")
    assert world.actor is not None

    response = await client.put(f"/api/notifications/{world.notification}/read", headers=world.actor.headers)
    inbox = await client.get(f"/api/notifications/user/{world.owner.id}", headers=world.actor.headers)

    assert response.status_code == 404
    assert inbox.json()["items"][0]["read"] is False
