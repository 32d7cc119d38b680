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

The audience is fixed when the broadcast is created: the users of that moment who are not
deleted and, for a persona, hold it (``user_roles``); suspended accounts are included (an
announcement may concern their account). Users who sign up later are not part of it.
"""

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import exists, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql import Select

from app.core.db import commit, sessionmaker
from app.core.errors import ValidationFailed
from app.core.events import record_event
from app.core.ids import uuid7
from app.core.runtime import runtime
from app.models import BroadcastStatus, NotificationBroadcast, Persona, User, UserRole, UserStatus
from app.notifications.service import Draft, deliver
from app.worker.queue import queue

logger = logging.getLogger("bazaar.notifications")

DELIVER_BROADCAST_TASK = "notifications.deliver_broadcast"
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
        return existing, False
    connection = await (await db.connection()).get_raw_connection()
    await queue.configure_task(DELIVER_BROADCAST_TASK, connection=connection.driver_connection).defer_async(
        broadcast_id=str(created.id)
    )
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
            type="announcement",
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
