"""Domain events go through the outbox in the transaction of their change: every committed
change leaves exactly its event, a rolled-back or failed commit leaves none."""

import uuid
from datetime import timedelta

from sqlalchemy import select, text

from app.core.db import DB, sessionmaker
from app.core.errors import Conflict
from app.core.events import record_event
from app.models import OutboxEvent, User
from tests.factories import PASSWORD, create_user, events_of, login, signed_in


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def all_events_since(seen: set[uuid.UUID]) -> list[OutboxEvent]:
    """Events not in ``seen``, in the order they were recorded (``occurred_at``, then UUIDv7)."""
    async with sessionmaker()() as db:
        rows = (
            (await db.execute(select(OutboxEvent).order_by(OutboxEvent.occurred_at, OutboxEvent.event_id)))
            .scalars()
            .all()
        )
    return [row for row in rows if row.event_id not in seen]


def unix_ms(event_id: uuid.UUID) -> int:
    """The first 48 bits of a UUIDv7: its creation time in Unix milliseconds."""
    return event_id.int >> 80


async def test_every_change_in_a_users_journey_emits_its_event_once(client):
    admin = await signed_in(client, "super_admin")
    seen = {e["event_id"] for e in await events_of()}

    signup = await client.post(
        "/api/users",
        json={"email": "ada@example.com", "password": PASSWORD, "name": "Ada", "persona": "builder"},
    )
    assert signup.status_code == 201
    user_id = signup.json()["id"]
    first = await login(client, "ada@example.com")
    me = bearer(first["accessToken"])
    assert (await client.put(f"/api/users/{user_id}", json={"name": "Ada L."}, headers=me)).status_code == 200
    # Saving unchanged values is not a change.
    assert (await client.put(f"/api/users/{user_id}", json={"name": "Ada L."}, headers=me)).status_code == 200
    roles = await client.put(
        f"/api/users/{user_id}", json={"personas": ["builder", "end_user"]}, headers=admin.headers
    )
    assert roles.status_code == 200
    status_url = f"/api/users/{user_id}/status"
    assert (await client.put(status_url, json={"status": "suspended"}, headers=admin.headers)).is_success
    assert (await client.put(status_url, json={"status": "suspended"}, headers=admin.headers)).is_success
    assert (await client.put(status_url, json={"status": "active"}, headers=admin.headers)).is_success
    second = await login(client, "ada@example.com")
    me = bearer(second["accessToken"])
    plan = await client.put(f"/api/users/{user_id}/subscription", json={"plan": "pro"}, headers=admin.headers)
    assert plan.status_code == 200
    created = await client.post("/api/projects", json={"name": "Helpdesk bot"}, headers=me)
    assert created.status_code == 201
    project_url = f"/api/projects/{created.json()['id']}"
    assert (await client.put(project_url, json={"prompt": "Be kind"}, headers=me)).status_code == 200
    assert (await client.put(project_url, json={"prompt": "Be kind"}, headers=me)).status_code == 200
    moved = await client.put(f"{project_url}/status", json={"status": "in_development"}, headers=me)
    assert moved.status_code == 200
    assert (await client.delete(project_url, headers=me)).status_code == 204
    assert (await client.post("/api/auth/logout", headers=me)).status_code == 204
    assert (await client.delete(f"/api/users/{user_id}", headers=admin.headers)).status_code == 204

    events = await all_events_since(seen)

    user, project = user_id, created.json()["id"]
    admin_id = str(admin.id)
    assert [(e.type, str(e.actor_id), e.subject_id) for e in events] == [
        ("user.created", user, user),
        ("session.login", user, first["user"]["sessionId"]),
        ("user.updated", user, user),
        ("user.roles_changed", admin_id, user),
        ("user.suspended", admin_id, user),
        ("user.activated", admin_id, user),
        ("session.login", user, second["user"]["sessionId"]),
        ("user.subscription_changed", admin_id, user),
        ("project.created", user, project),
        ("project.updated", user, project),
        ("project.status_changed", user, project),
        ("project.deleted", user, project),
        ("session.logout", user, second["user"]["sessionId"]),
        ("user.deleted", admin_id, user),
    ]
    payloads = {e.type: e.payload for e in events}
    assert payloads["user.created"]["signup"] is True
    assert payloads["user.updated"]["fields"] == ["name"]
    assert payloads["user.roles_changed"] == {"from": ["builder"], "to": ["builder", "end_user"]}
    assert (payloads["user.suspended"]["from"], payloads["user.suspended"]["to"]) == ("active", "suspended")
    assert (payloads["user.subscription_changed"]["from"], payloads["user.subscription_changed"]["to"]) == (
        "free",
        "pro",
    )
    assert payloads["project.status_changed"]["from"] == "draft"
    assert payloads["project.status_changed"]["to"] == "in_development"
    assert all(e.schema_version == 1 for e in events)
    assert all(e.event_id.version == 7 for e in events)
    # Ids sort by creation (to the millisecond their UUIDv7 carries).
    assert [unix_ms(e.event_id) for e in events] == sorted(unix_ms(e.event_id) for e in events)


async def test_admin_created_user_is_not_a_signup(client):
    admin = await signed_in(client, "super_admin")

    response = await client.post(
        "/api/users",
        json={"email": "made@example.com", "password": PASSWORD, "name": "Made", "persona": "end_user"},
        headers=admin.headers,
    )

    assert response.status_code == 201
    created = [e for e in await events_of("user.created") if e["subject_id"] == response.json()["id"]]
    assert len(created) == 1
    assert created[0]["payload"]["signup"] is False
    assert created[0]["actor_id"] == admin.id


async def test_event_ids_are_uuid7_and_sort_by_creation_time(client):
    user = await create_user("builder")
    for _ in range(3):
        await login(client, user.email)

    async with sessionmaker()() as db:
        rows = (
            (await db.execute(select(OutboxEvent).order_by(OutboxEvent.occurred_at, OutboxEvent.event_id)))
            .scalars()
            .all()
        )

    assert len(rows) == 4
    assert [row.event_id.version for row in rows] == [7, 7, 7, 7]
    assert [row.event_id for row in rows] == sorted(row.event_id for row in rows)
    for row in rows:
        assert abs(unix_ms(row.event_id) - row.occurred_at.timestamp() * 1000) <= 5
    assert rows[-1].occurred_at - rows[0].occurred_at < timedelta(minutes=1)


async def test_rejected_requests_leave_no_event(client):
    account = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    seen = {e["event_id"] for e in await events_of()}

    # Adding end_user (allowed) records user.roles_changed, then the default persona check fails.
    half_valid = await client.put(
        f"/api/users/{account.id}",
        json={"personas": ["builder", "end_user"], "persona": "super_admin"},
        headers=account.headers,
    )
    not_allowed = await client.put(
        f"/api/users/{admin.id}/status", json={"status": "suspended"}, headers=account.headers
    )

    assert half_valid.status_code == 403
    assert not_allowed.status_code == 403
    assert await all_events_since(seen) == []
    me = await client.get("/api/auth/me", headers=account.headers)
    assert me.json()["personas"] == ["builder"]


async def test_a_request_that_fails_after_recording_an_event_leaves_no_event(app, client):
    @app.post("/test/record-then-fail")
    async def record_then_fail(db: DB) -> None:
        await record_event(db, "test.rolled_back", actor_id=None, subject_id="nothing")
        await db.flush()  # the row is written inside the transaction...
        raise Conflict("Changed my mind", code="test_conflict")  # ...which then rolls back

    response = await client.post("/test/record-then-fail")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "test_conflict"
    assert await events_of("test.") == []


async def test_a_failed_commit_is_an_error_response_and_leaves_no_event(app, client):
    taken = await create_user("builder")

    @app.post("/test/fail-at-commit")
    async def fail_at_commit(db: DB) -> dict[str, str]:
        await record_event(db, "test.commit_failed", actor_id=None, subject_id="nothing")
        # Not flushed: the duplicate email only hits the unique index at commit.
        db.add(User(email=taken.email.upper(), name="Twin", password_hash="x", default_persona="builder"))
        return {"status": "saved"}

    response = await client.post("/test/fail-at-commit")

    assert response.status_code >= 400
    assert "saved" not in response.text
    assert await events_of("test.") == []
    async with sessionmaker()() as db:
        twins = (
            await db.execute(text("SELECT count(*) FROM users WHERE lower(email) = :e"), {"e": taken.email})
        ).scalar_one()
    assert twins == 1


async def test_events_committed_together_share_one_time_and_the_next_transaction_gets_a_later_one(app):
    async with sessionmaker()() as db:
        await db.execute(text("SELECT 1"))
        sale = await record_event(db, "test.sale", actor_id=None, subject_id="s")
        posting = await record_event(db, "test.posting", actor_id=None, subject_id="s")
        await db.commit()
        await db.execute(text("SELECT 1"))
        later = await record_event(db, "test.later", actor_id=None, subject_id="s")
        await db.commit()

    # A refund and its ledger posting must never fall on two sides of midnight in reports.
    assert sale.occurred_at == posting.occurred_at
    assert later.occurred_at > sale.occurred_at


def test_ids_made_within_one_millisecond_still_sort_in_the_order_they_were_made():
    from app.core.ids import uuid7

    ids = [uuid7() for _ in range(20_000)]  # many per millisecond

    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {7}
