"""Admins' broadcasts, delivered by the worker in batches.

``create_broadcast`` stores the broadcast (``queued``) and enqueues the job
``notifications.deliver_broadcast`` on the request's own connection, so the job exists iff the
broadcast commits; the request returns at once, whatever the audience's size.

The job delivers to the audience in batches of ``BROADCAST_BATCH_SIZE`` users, in ``users.id``
order, each batch one transaction: lock the broadcast row, take the next users after
``cursor_user_id``, ``deliver`` the announcement to them (template ``announcement``), move the
cursor and ``delivered`` on, commit. A worker killed mid-batch loses that batch's transaction
(notifications, emails and cursor alike), and the job, retried or run again, carries on after
the last committed cursor; the unique ``(user_id, broadcast_id)`` of notifications and emails
would stop a duplicate anyway. The row lock makes two runs of one broadcast take turns.

Nothing in procrastinate runs such a job again: a job that raised is ``failed``, and one whose
worker was killed stays ``doing`` for ever. ``notifications.resume_broadcasts`` (every five
minutes) queues a new job for each broadcast not done that no live job is delivering or waiting
to deliver.

The audience is fixed when the broadcast is created: the users of that moment who are not
deleted and, for a persona, hold it (``user_roles``); suspended accounts are included (an
announcement may concern their account). Users who sign up later are not part of it.
"""

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import exists, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql import Select

from app.core.db import commit, sessionmaker
from app.core.errors import Conflict, ValidationFailed
from app.core.events import record_event
from app.core.ids import uuid7
from app.core.runtime import runtime
from app.models import BroadcastStatus, NotificationBroadcast, Persona, User, UserRole, UserStatus
from app.notifications.service import ANNOUNCEMENT, Draft, deliver, render_or_422
from app.notifications.templates import templates_by_type
from app.worker.queue import queue

logger = logging.getLogger("bazaar.notifications")

DELIVER_BROADCAST_TASK = "notifications.deliver_broadcast"
RESUME_BROADCASTS_TASK = "notifications.resume_broadcasts"
# procrastinate workers beat every 10 s (and call one silent for 30 s stalled): one silent this
# long has died, and the job it was running will not finish.
WORKER_SILENT_AFTER = timedelta(minutes=1)
AUDIENCES = ("all", *(persona.value for persona in Persona))


async def create_broadcast(
    db: AsyncSession,
    *,
    admin_id: UUID,
    audience: str,
    title: str,
    message: str,
    send_email: bool,
    idempotency_key: str | None,
) -> tuple[NotificationBroadcast, bool]:
    """The broadcast, queued for the worker, and whether it was created now (a retry with the
    same ``idempotency_key`` by the same admin gets the first one back and queues nothing)."""
    if audience not in AUDIENCES:
        raise ValidationFailed(
            f"audience must be one of {', '.join(AUDIENCES)}",
            code="audience_invalid",
            details={"audience": audience, "allowed": list(AUDIENCES)},
        )
    # Every recipient gets the same text: an announcement template that cannot render it (an
    # administrator's edit) is refused now rather than failing the job in the worker.
    spec = (await templates_by_type(db, {ANNOUNCEMENT}))[ANNOUNCEMENT]
    render_or_422(spec, {"title": title, "message": message})
    created = await db.scalar(
        insert(NotificationBroadcast)
        .values(
            id=uuid7(),
            created_by=admin_id,
            audience=audience,
            title=title,
            message=message,
            send_email=send_email,
            status=BroadcastStatus.QUEUED,
            delivered=0,
            idempotency_key=idempotency_key,
            created_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing(constraint="uq_notification_broadcasts_idempotency")
        .returning(NotificationBroadcast),
        execution_options={"populate_existing": True},
    )
    if created is None:
        existing = await db.scalar(
            select(NotificationBroadcast).where(
                NotificationBroadcast.created_by == admin_id,
                NotificationBroadcast.idempotency_key == idempotency_key,
            )
        )
        assert existing is not None  # the conflict was on this very row
        if (existing.audience, existing.title, existing.message, existing.send_email) != (
            audience,
            title,
            message,
            send_email,
        ):
            raise Conflict(
                "This Idempotency-Key was used for another broadcast",
                code="idempotency_key_reused",
                details={"broadcastId": str(existing.id)},
            )
        return existing, False
    await _queue_delivery(db, [created.id])
    await record_event(
        db,
        "notification.broadcast_created",
        actor_id=admin_id,
        subject_id=created.id,
        payload={
            "broadcastId": str(created.id),
            "audience": audience,
            "title": title,
            "sendEmail": send_email,
        },
    )
    return created, True


async def _queue_delivery(db: AsyncSession, broadcast_ids: list[UUID]) -> None:
    """A ``notifications.deliver_broadcast`` job per broadcast, on the session's own connection:
    the jobs exist iff the transaction commits."""
    if not broadcast_ids:
        return
    connection = await (await db.connection()).get_raw_connection()
    task = queue.configure_task(DELIVER_BROADCAST_TASK, connection=connection.driver_connection)
    jobs: list[dict[str, Any]] = [{"broadcast_id": str(broadcast_id)} for broadcast_id in broadcast_ids]
    await task.batch_defer_async(*jobs)


async def get_broadcast(db: AsyncSession, broadcast_id: UUID) -> NotificationBroadcast | None:
    return await db.get(NotificationBroadcast, broadcast_id)


def _audience(broadcast: NotificationBroadcast) -> Select[Any]:
    """The broadcast's recipients (``User.id``), unordered."""
    query = select(User.id).where(User.status != UserStatus.DELETED, User.created_at <= broadcast.created_at)
    if broadcast.audience != "all":
        query = query.where(exists().where(UserRole.user_id == User.id, UserRole.role == broadcast.audience))
    return query


async def _locked(db: AsyncSession, broadcast_id: UUID) -> NotificationBroadcast | None:
    return await db.scalar(
        select(NotificationBroadcast)
        .where(NotificationBroadcast.id == broadcast_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def deliver_broadcast_batch(db: AsyncSession, broadcast: NotificationBroadcast, batch_size: int) -> int:
    """Deliver to the next ``batch_size`` recipients after the cursor (``broadcast`` locked in
    ``db``'s transaction) and move the cursor; how many recipients the batch had (0: done)."""
    query = _audience(broadcast).order_by(User.id).limit(batch_size)
    if broadcast.cursor_user_id is not None:
        query = query.where(User.id > broadcast.cursor_user_id)
    user_ids = list((await db.scalars(query)).all())
    if not user_ids:
        return 0
    variables = {"title": broadcast.title, "message": broadcast.message}
    data = {"broadcastId": str(broadcast.id)}
    drafts = [
        Draft(
            user_id=user_id,
            type=ANNOUNCEMENT,
            variables=variables,
            data=data,
            broadcast_id=broadcast.id,
            email=broadcast.send_email,
        )
        for user_id in user_ids
    ]
    await deliver(db, drafts, actor_id=broadcast.created_by)
    broadcast.cursor_user_id = user_ids[-1]
    broadcast.delivered += len(user_ids)
    return len(user_ids)


async def run_broadcast(
    sessions: async_sessionmaker[AsyncSession], broadcast_id: UUID, *, batch_size: int
) -> int:
    """Deliver ``broadcast_id`` to the rest of its audience, one transaction per batch; returns
    how many recipients it has reached in all. Running it again after it is done does nothing."""
    async with sessions() as db:
        broadcast = await _locked(db, broadcast_id)
        if broadcast is None:
            logger.warning("broadcast to deliver does not exist", extra={"broadcastId": str(broadcast_id)})
            return 0
        if broadcast.status == BroadcastStatus.QUEUED:
            broadcast.status = BroadcastStatus.RUNNING
            broadcast.started_at = datetime.now(UTC)
            broadcast.total = await db.scalar(
                select(func.count()).select_from(_audience(broadcast).subquery())
            )
        await commit(db)
    while True:
        async with sessions() as db:
            broadcast = await _locked(db, broadcast_id)
            assert broadcast is not None
            if broadcast.status == BroadcastStatus.DONE:
                return broadcast.delivered
            if not await deliver_broadcast_batch(db, broadcast, batch_size):
                await _finish(db, broadcast)
                await commit(db)
                return broadcast.delivered
            await commit(db)


async def _finish(db: AsyncSession, broadcast: NotificationBroadcast) -> None:
    broadcast.status = BroadcastStatus.DONE
    broadcast.finished_at = datetime.now(UTC)
    started = broadcast.started_at or broadcast.finished_at
    await record_event(
        db,
        "notification.broadcast_finished",
        actor_id=broadcast.created_by,
        subject_id=broadcast.id,
        payload={
            "broadcastId": str(broadcast.id),
            "audience": broadcast.audience,
            "total": broadcast.total,
            "delivered": broadcast.delivered,
            "durationMs": int((broadcast.finished_at - started).total_seconds() * 1000),
        },
    )
    logger.info(
        "broadcast delivered",
        extra={"broadcastId": str(broadcast.id), "delivered": broadcast.delivered, "total": broadcast.total},
    )


@queue.task(name=DELIVER_BROADCAST_TASK, queue="notifications")
async def deliver_broadcast(broadcast_id: str) -> int:
    """Enqueued with the broadcast (``create_broadcast``)."""
    return await run_broadcast(
        sessionmaker(), UUID(broadcast_id), batch_size=runtime().settings.broadcast_batch_size
    )


async def resume_stalled_broadcasts(db: AsyncSession) -> list[UUID]:
    """Queue the job again, in ``db``'s transaction, for every broadcast not done whose job is
    gone: failed (it raised: Postgres restarting mid-batch, a bug), or left ``doing`` by a worker
    that died in it (no heartbeat for ``WORKER_SILENT_AFTER``). A job waiting (``todo``, retries
    included) or running in a live worker keeps its broadcast; the new job carries on after the
    cursor. Returns the broadcasts resumed."""
    rows = await db.scalars(
        text(
            """
            SELECT b.id FROM notification_broadcasts b
            WHERE b.status IN ('queued', 'running')
              AND NOT EXISTS (
                SELECT 1 FROM procrastinate_jobs j
                LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
                WHERE j.task_name = :task
                  AND j.args ->> 'broadcast_id' = b.id::text
                  AND (j.status = 'todo' OR (j.status = 'doing' AND w.last_heartbeat > now() - :silent))
              )
            ORDER BY b.id
            """
        ),
        {"task": DELIVER_BROADCAST_TASK, "silent": WORKER_SILENT_AFTER},
    )
    stalled = list(rows)
    await _queue_delivery(db, stalled)
    return stalled


@queue.periodic(cron="*/5 * * * *")
@queue.task(name=RESUME_BROADCASTS_TASK, queue="maintenance")
async def resume_broadcasts(timestamp: int) -> int:
    """Every five minutes: broadcasts whose job failed or died get a new one."""
    async with sessionmaker()() as db:
        resumed = await resume_stalled_broadcasts(db)
        await commit(db)
    if resumed:
        logger.warning(
            "resumed broadcasts whose job failed or died", extra={"broadcastIds": [str(b) for b in resumed]}
        )
    return len(resumed)
