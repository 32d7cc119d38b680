"""Delivering notifications: one code path for the event dispatcher, an admin's send and a
broadcast batch.

``deliver`` renders each draft with its template, looks up what the recipient wants (in-app,
email: ``NotificationPreference``, else the category's default), inserts the notifications and
the queued emails in the caller's transaction (``ON CONFLICT DO NOTHING`` on the source keys, so
a draft delivered twice is delivered once), enqueues one send job per new email on the same
connection, records ``notification.sent`` and announces the new notifications to the realtime
stream once the transaction commits. Nothing is sent before the commit.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.events import record_event
from app.core.ids import uuid7
from app.models import (
    EmailDelivery,
    EmailStatus,
    Notification,
    NotificationCategory,
    NotificationPreference,
    User,
    UserStatus,
)
from app.notifications import realtime
from app.notifications.schemas import notification_json
from app.notifications.templates import render, templates_by_type
from app.worker.queue import queue

SEND_EMAIL_TASK = "notifications.send_email"
MAIL_DOMAIN = "bazaar.local"


@dataclass(frozen=True)
class Channels:
    in_app: bool
    email: bool


# What a user gets when they have not chosen: everything in the app, and email for what concerns
# their money, their account and their listings. Announcements reach the inbox; a broadcast asks
# for email explicitly and still respects a user's "no email".
DEFAULT_CHANNELS: dict[str, Channels] = {
    NotificationCategory.ACCOUNT: Channels(in_app=True, email=True),
    NotificationCategory.LISTINGS: Channels(in_app=True, email=True),
    NotificationCategory.SALES: Channels(in_app=True, email=True),
    NotificationCategory.PURCHASES: Channels(in_app=True, email=True),
    NotificationCategory.PAYOUTS: Channels(in_app=True, email=True),
    NotificationCategory.BILLING: Channels(in_app=True, email=True),
    NotificationCategory.WIDGETS: Channels(in_app=True, email=True),
    NotificationCategory.OPERATIONS: Channels(in_app=True, email=True),
    NotificationCategory.ANNOUNCEMENTS: Channels(in_app=True, email=True),
}


@dataclass
class Draft:
    """A notification to deliver: a template type and its variables, for one user."""

    user_id: UUID
    type: str
    variables: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    source_event_id: UUID | None = None
    broadcast_id: UUID | None = None
    # False: in the inbox only, whatever the preference says (a broadcast without email).
    email: bool = True


@dataclass
class Delivered:
    notifications: list[Notification]
    emails: int


async def channels_for(db: AsyncSession, pairs: set[tuple[UUID, str]]) -> dict[tuple[UUID, str], Channels]:
    """Each (user, category)'s channels: their preference, else the category's default."""
    found: dict[tuple[UUID, str], Channels] = {}
    if pairs:
        rows = await db.execute(
            select(NotificationPreference).where(
                tuple_(NotificationPreference.user_id, NotificationPreference.category).in_(list(pairs))
            )
        )
        for pref in rows.scalars():
            found[(pref.user_id, pref.category)] = Channels(in_app=pref.in_app, email=pref.email)
    return {pair: found.get(pair, DEFAULT_CHANNELS[pair[1]]) for pair in pairs}


async def deliver(db: AsyncSession, drafts: Sequence[Draft], *, actor_id: UUID | None = None) -> Delivered:
    if not drafts:
        return Delivered([], 0)
    templates = await templates_by_type(db, {draft.type for draft in drafts})
    user_ids = {draft.user_id for draft in drafts}
    recipients = {
        user.id: user
        for user in (
            await db.scalars(select(User).where(User.id.in_(user_ids), User.status != UserStatus.DELETED))
        ).all()
    }
    wanted = await channels_for(
        db, {(d.user_id, templates[d.type].category) for d in drafts if d.user_id in recipients}
    )

    notification_rows: list[dict[str, Any]] = []
    email_rows: list[dict[str, Any]] = []
    for draft in drafts:
        user = recipients.get(draft.user_id)
        if user is None:
            continue  # deleted (or never existed): nobody to tell
        spec = templates[draft.type]
        channels = wanted[(user.id, spec.category)]
        rendered = render(spec, draft.variables)
        notification_id = uuid7()
        keys = {"source_event_id": draft.source_event_id, "broadcast_id": draft.broadcast_id}
        if channels.in_app:
            notification_rows.append(
                {
                    "id": notification_id,
                    "user_id": user.id,
                    "type": spec.type,
                    "category": spec.category,
                    "title": rendered.title,
                    "message": rendered.message,
                    "data": draft.data,
                    **keys,
                }
            )
        if channels.email and draft.email:
            email_id = uuid7()
            email_rows.append(
                {
                    "id": email_id,
                    "user_id": user.id,
                    "notification_id": notification_id if channels.in_app else None,
                    "type": spec.type,
                    "to_address": user.email,
                    "subject": rendered.title,
                    "text_body": rendered.message,
                    "html_body": rendered.html,
                    "message_id": f"<{email_id}@{MAIL_DOMAIN}>",
                    "status": EmailStatus.PENDING,
                    **keys,
                }
            )

    created: list[Notification] = []
    if notification_rows:
        created = list(
            (
                await db.scalars(
                    insert(Notification)
                    .values(notification_rows)
                    .on_conflict_do_nothing()
                    .returning(Notification),
                    execution_options={"populate_existing": True},
                )
            ).all()
        )
    created_ids = {n.id for n in created}
    # An email whose notification already existed (a redelivered event) is a duplicate too: the
    # unique keys on email_deliveries say so; an email tied to a notification not created now
    # must not reference it.
    for row in email_rows:
        if row["notification_id"] is not None and row["notification_id"] not in created_ids:
            row["notification_id"] = None
    email_ids: list[UUID] = []
    if email_rows:
        email_ids = list(
            (
                await db.scalars(
                    insert(EmailDelivery)
                    .values(email_rows)
                    .on_conflict_do_nothing()
                    .returning(EmailDelivery.id)
                )
            ).all()
        )
        connection = await (await db.connection()).get_raw_connection()
        task = queue.configure_task(SEND_EMAIL_TASK, connection=connection.driver_connection)
        for email_id in email_ids:
            await task.defer_async(delivery_id=str(email_id))

    emailed = {row["user_id"] for row in email_rows if row["id"] in set(email_ids)}
    for notification in created:
        await record_event(
            db,
            "notification.sent",
            actor_id=actor_id,
            subject_id=notification.id,
            payload={
                "notificationId": str(notification.id),
                "userId": str(notification.user_id),
                "type": notification.type,
                "category": notification.category,
                "channels": ["in_app", "email"] if notification.user_id in emailed else ["in_app"],
                "sourceEventId": str(notification.source_event_id) if notification.source_event_id else None,
                "broadcastId": str(notification.broadcast_id) if notification.broadcast_id else None,
            },
        )
    if created:
        await realtime.announce(db, [notification_json(n) for n in created])
    return Delivered(created, len(email_ids))
