"""An administrator's broadcast: the request answers at once, the worker's job delivers it in
batches to exactly its audience, once each, and carries on after a crash where it stopped."""

from collections import Counter
from typing import Any
from uuid import UUID

import httpx
import pytest
from procrastinate import PsycopgConnector
from sqlalchemy import func, select, text

from app.core.config import Settings
from app.core.db import sessionmaker
from app.models import EmailDelivery, Notification, NotificationBroadcast, User
from app.notifications import broadcast as broadcasts
from app.worker.queue import libpq_url, queue
from tests.factories import Account, create_user, events_of, signed_in
from tests.matrix import assert_error_shape


async def run_broadcast_jobs(settings: Settings) -> None:
    """The real procrastinate worker on the test database, until the broadcasts' queue is empty."""
    connector = PsycopgConnector(conninfo=libpq_url(settings.database_url or ""))
    with queue.replace_connector(connector) as app:
        async with app.open_async():
            await app.run_worker_async(
                queues=["notifications"],
                wait=False,
                listen_notify=False,
                concurrency=1,
                install_signal_handlers=False,
            )


async def post_broadcast(
    client: httpx.AsyncClient, admin: Account, *, expect: int = 202, key: str | None = None, **body: Any
) -> dict[str, Any]:
    body = {
        "audience": "all",
        "title": "Maintenance on Sunday",
        "message": "We upgrade at 02:00 UTC.",
        **body,
    }
    headers = {**admin.headers, **({"Idempotency-Key": key} if key else {})}
    response = await client.post("/api/notifications/broadcast", json=body, headers=headers)
    assert response.status_code == expect, response.text
    return dict(response.json())


async def progress(client: httpx.AsyncClient, admin: Account, broadcast_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/notifications/broadcasts/{broadcast_id}", headers=admin.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def reached(broadcast_id: str) -> Counter[UUID]:
    """Announcements of the broadcast per recipient."""
    async with sessionmaker()() as db:
        rows = await db.scalars(
            select(Notification.user_id).where(Notification.broadcast_id == UUID(broadcast_id))
        )
        return Counter(rows)


async def jobs(task_name: str) -> int:
    async with sessionmaker()() as db:
        count = await db.scalar(
            text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = :name"), {"name": task_name}
        )
    return int(count or 0)


async def test_a_broadcast_to_a_persona_reaches_each_of_its_holders_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await signed_in(client, "super_admin")
    builders = [await create_user("builder") for _ in range(3)]
    both = await create_user("end_user", personas=["end_user", "builder"])
    end_users = [await create_user("end_user") for _ in range(2)]
    gone = await create_user("builder")
    deleted = await client.delete(f"/api/users/{gone.id}", headers=admin.headers)
    assert deleted.status_code in (200, 204), deleted.text

    queued = await post_broadcast(
        client, admin, audience="builder", title="Payouts on Friday", sendEmail=True
    )

    assert (queued["status"], queued["total"], queued["delivered"]) == ("queued", None, 0)
    assert await jobs(broadcasts.DELIVER_BROADCAST_TASK) == 1
    assert await reached(queued["id"]) == {}  # nothing delivered by the request itself

    await run_broadcast_jobs(settings)

    audience = {user.id for user in builders} | {both.id}
    assert await reached(queued["id"]) == dict.fromkeys(audience, 1)
    done = await progress(client, admin, queued["id"])
    assert (done["status"], done["total"], done["delivered"]) == ("done", 4, 4)
    assert done["startedAt"] is not None
    assert done["finishedAt"] is not None
    async with sessionmaker()() as db:
        note = await db.scalar(select(Notification).where(Notification.user_id == both.id))
        emailed = set(
            await db.scalars(
                select(EmailDelivery.user_id).where(EmailDelivery.broadcast_id == UUID(queued["id"]))
            )
        )
    assert note is not None
    assert (note.type, note.title, note.message) == (
        "announcement",
        "Payouts on Friday",
        "We upgrade at 02:00 UTC.",
    )
    assert emailed == audience
    assert not {u.id for u in end_users} & set(await reached(queued["id"]))
    [created] = await events_of("notification.broadcast_created")
    assert (created["payload"]["audience"], created["actor_id"]) == ("builder", admin.id)
    [finished] = await events_of("notification.broadcast_finished")
    assert (finished["payload"]["total"], finished["payload"]["delivered"]) == (4, 4)

    # The job running again (a retry) delivers nothing twice.
    await broadcasts.run_broadcast(sessionmaker(), UUID(queued["id"]), batch_size=2)
    assert await reached(queued["id"]) == dict.fromkeys(audience, 1)
    assert len(await events_of("notification.broadcast_finished")) == 1


async def test_a_retried_request_queues_one_broadcast_and_a_bad_audience_is_refused(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")

    first = await post_broadcast(client, admin, key="sunday")
    again = await post_broadcast(client, admin, key="sunday", expect=200)
    refused = await client.post(
        "/api/notifications/broadcast",
        json={"audience": "visitors", "title": "T", "message": "M"},
        headers=admin.headers,
    )

    assert again["id"] == first["id"]
    assert await jobs(broadcasts.DELIVER_BROADCAST_TASK) == 1
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "audience_invalid"


async def test_an_idempotency_key_reused_for_another_broadcast_is_a_conflict(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    first = await post_broadcast(client, admin, key="sunday")

    other = await client.post(
        "/api/notifications/broadcast",
        json={"audience": "all", "title": "Another subject", "message": "We upgrade at 02:00 UTC."},
        headers={**admin.headers, "Idempotency-Key": "sunday"},
    )

    error = assert_error_shape(other)
    assert (other.status_code, error["code"]) == (409, "idempotency_key_reused")
    assert error["details"] == {"broadcastId": first["id"]}
    assert await jobs(broadcasts.DELIVER_BROADCAST_TASK) == 1


async def test_a_broadcast_whose_job_failed_or_whose_worker_died_is_resumed_and_reaches_everyone_once(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await signed_in(client, "super_admin")
    for _ in range(3):
        await create_user("end_user")
    failed = await post_broadcast(client, admin, audience="all", title="Failed")

    # Postgres going away mid-job, as the job sees it: its first batch raises.
    async def postgres_went_away(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("server closed the connection unexpectedly")

    monkeypatch.setattr(broadcasts, "deliver", postgres_went_away)
    await run_broadcast_jobs(settings)
    monkeypatch.undo()
    assert (await progress(client, admin, failed["id"]))["status"] == "running"
    assert await job_states(failed["id"]) == ["failed"]

    # A worker killed in the job: procrastinate's own functions leave it `doing` for that worker.
    died = await post_broadcast(client, admin, audience="all", title="Died")
    async with sessionmaker()() as db:
        worker = await db.scalar(text("SELECT procrastinate_register_worker_v1()"))
        await db.execute(
            text("SELECT procrastinate_fetch_job_v2(ARRAY['notifications'], :worker)"), {"worker": worker}
        )
        await db.commit()
    assert await job_states(died["id"]) == ["doing"]

    # While that worker still beats, its job is left alone.
    assert await broadcasts.resume_broadcasts(timestamp=0) == 1
    assert await job_states(failed["id"]) == ["failed", "todo"]
    async with sessionmaker()() as db:
        await db.execute(
            text("UPDATE procrastinate_workers SET last_heartbeat = now() - interval '5 minutes'")
        )
        await db.commit()
    assert await broadcasts.resume_broadcasts(timestamp=0) == 1
    assert await job_states(died["id"]) == ["doing", "todo"]
    assert await broadcasts.resume_broadcasts(timestamp=0) == 0  # their jobs are waiting now

    await run_broadcast_jobs(settings)

    everyone = {user.id for user in await all_users()}
    for broadcast in (failed, died):
        assert await reached(broadcast["id"]) == dict.fromkeys(everyone, 1)
        assert (await progress(client, admin, broadcast["id"]))["status"] == "done"
    assert await broadcasts.resume_broadcasts(timestamp=0) == 0
    periodic = {p.task.name: p.cron for p in queue.periodic_registry.periodic_tasks.values()}
    assert periodic[broadcasts.RESUME_BROADCASTS_TASK] == "*/5 * * * *"  # the worker runs the sweep


async def job_states(broadcast_id: str) -> list[str]:
    """The statuses of the broadcast's jobs, oldest first."""
    async with sessionmaker()() as db:
        rows = await db.scalars(
            text(
                "SELECT status::text FROM procrastinate_jobs "
                "WHERE task_name = :task AND args ->> 'broadcast_id' = :id ORDER BY id"
            ),
            {"task": broadcasts.DELIVER_BROADCAST_TASK, "id": broadcast_id},
        )
        return list(rows)


async def all_users() -> list[User]:
    async with sessionmaker()() as db:
        return list(await db.scalars(select(User)))


class WorkerDied(BaseException):
    """What a SIGKILL looks like from inside the transaction: it never commits."""


async def test_a_broadcast_interrupted_mid_batch_carries_on_after_the_last_committed_batch(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await signed_in(client, "super_admin")
    for _ in range(24):
        await create_user("end_user")
    queued = await post_broadcast(client, admin, audience="all")
    broadcast_id = UUID(queued["id"])
    real_deliver = broadcasts.deliver
    batches = 0

    async def dies_in_the_third_batch(*args: Any, **kwargs: Any) -> Any:
        nonlocal batches
        batches += 1
        delivered = await real_deliver(*args, **kwargs)
        if batches == 3:
            raise WorkerDied  # after its rows were written, before the commit
        return delivered

    monkeypatch.setattr(broadcasts, "deliver", dies_in_the_third_batch)
    with pytest.raises(WorkerDied):
        await broadcasts.run_broadcast(sessionmaker(), broadcast_id, batch_size=10)

    halfway = await progress(client, admin, queued["id"])
    assert (halfway["status"], halfway["total"], halfway["delivered"]) == ("running", 25, 20)
    first_two_batches = await reached(queued["id"])
    assert len(first_two_batches) == 20
    async with sessionmaker()() as db:
        before = {
            n.id
            for n in await db.scalars(select(Notification).where(Notification.broadcast_id == broadcast_id))
        }

    monkeypatch.setattr(broadcasts, "deliver", real_deliver)
    assert await broadcasts.run_broadcast(sessionmaker(), broadcast_id, batch_size=10) == 25

    everyone = await reached(queued["id"])
    assert len(everyone) == 25
    assert set(everyone.values()) == {1}
    async with sessionmaker()() as db:
        after = {
            n.id
            for n in await db.scalars(select(Notification).where(Notification.broadcast_id == broadcast_id))
        }
    assert before < after  # the first two batches were kept, not delivered again
    done = await progress(client, admin, queued["id"])
    assert (done["status"], done["delivered"]) == ("done", 25)


async def insert_end_users(count: int) -> None:
    """``count`` end users in one INSERT (the API would spend minutes hashing passwords)."""
    async with sessionmaker()() as db:
        await db.execute(
            text(
                """
                WITH made AS (
                    INSERT INTO users
                        (id, email, name, password_hash, default_persona, status, plan, metadata)
                    SELECT gen_random_uuid(), 'bulk' || n || '@example.com', 'Bulk ' || n, 'x',
                           'end_user', 'active', 'free', '{}'::jsonb
                    FROM generate_series(1, :count) AS n
                    RETURNING id
                )
                INSERT INTO user_roles (user_id, role) SELECT id, 'end_user' FROM made
                """
            ),
            {"count": count},
        )
        await db.commit()


async def test_a_broadcast_to_ten_thousand_users_is_delivered_to_all_of_them(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await signed_in(client, "super_admin")
    await insert_end_users(10_000)

    queued = await post_broadcast(client, admin, audience="end_user", sendEmail=True)
    assert queued["status"] == "queued"
    await run_broadcast_jobs(settings)

    done = await progress(client, admin, queued["id"])
    assert (done["status"], done["total"], done["delivered"]) == ("done", 10_000, 10_000)
    async with sessionmaker()() as db:
        notifications = await db.scalar(
            select(func.count(func.distinct(Notification.user_id))).where(
                Notification.broadcast_id == UUID(queued["id"])
            )
        )
        emails = await db.scalar(
            select(func.count())
            .select_from(EmailDelivery)
            .where(EmailDelivery.broadcast_id == UUID(queued["id"]))
        )
        stored = await db.get(NotificationBroadcast, UUID(queued["id"]))
    assert notifications == 10_000
    assert emails == 10_000
    assert stored is not None
    assert stored.cursor_user_id is not None
    assert await jobs("notifications.send_email") == 10_000
