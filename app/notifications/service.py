"""Delivering notifications: one code path for the event dispatcher, an admin's send and a
broadcast batch.

``deliver`` renders each draft with its template, looks up what the recipient wants (in-app,
email: ``NotificationPreference``, else the category's default), inserts the notifications and
the queued emails in the caller's transaction (``ON CONFLICT DO NOTHING`` on the source keys, so
a draft delivered twice is delivered once), enqueues one send job per new email on the same
connection, records ``notification.sent`` and announces the new notifications to the realtime
stream once the transaction commits. Nothing is sent before the commit.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast
from uuid import UUID

import orjson
from sqlalchemy import Table, TextClause, select, text, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound, ValidationFailed
from app.core.events import record_event
from app.core.idempotency import answer_once
from app.core.ids import uuid7
from app.core.pagination import PageParams, apply_sort, paginate
from app.core.principal import Principal
from app.models import (
    EmailDelivery,
    EmailStatus,
    Notification,
    NotificationCategory,
    NotificationPreference,
    NotificationTemplate,
    User,
    UserStatus,
)
from app.notifications import realtime
from app.notifications.repository import (
    notification_repository,
    preference_repository,
    template_repository,
)
from app.notifications.schemas import (
    ChannelsOut,
    NotificationOut,
    NotificationSend,
    Preferences,
    PreferencesUpdate,
    RenderedOut,
    SendResult,
    TemplateOut,
    TemplatePreview,
    TemplateUpdate,
    notification_json,
)
from app.notifications.templates import (
    Rendered,
    TemplateInvalid,
    TemplateSpec,
    check_template,
    check_variables,
    file_templates,
    render,
    spec_of,
    templates_by_type,
)
from app.users.service import user_service
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


def _render_once(
    renders: dict[tuple[str, bytes], Rendered], spec: TemplateSpec, variables: Mapping[str, Any]
) -> Rendered:
    try:
        key = (spec.type, orjson.dumps(variables, option=orjson.OPT_SORT_KEYS))
    except TypeError:  # not JSON: rendered every time
        return render(spec, variables)
    if key not in renders:
        renders[key] = render(spec, variables)
    return renders[key]


_NOTIFICATIONS = cast(Table, Notification.__table__)
_EMAILS = cast(Table, EmailDelivery.__table__)


@cache
def _sql_types(table: Table) -> dict[str, str]:
    """Each column's SQL type without a length: an explicit cast to ``varchar(n)`` would cut a
    longer value where the INSERT must refuse it."""
    dialect = PGDialect()  # type: ignore[no-untyped-call]
    return {
        column.name: re.sub(r"\(\d+\)", "", column.type.compile(dialect=dialect)) for column in table.columns
    }


def _insert_new(table: Table, rows: list[dict[str, Any]], *, returning: str = "*") -> TextClause:
    """``INSERT .. SELECT FROM unnest(<one array per column>) ON CONFLICT DO NOTHING RETURNING``:
    one short statement whatever the number of rows. A VALUES list of a broadcast batch's 1,000
    rows cost more to build and to parse (SQLAlchemy, psycopg) than Postgres took to insert it."""
    sql_types = _sql_types(table)
    names = list(rows[0])
    arrays = ", ".join(f"CAST(:{name} AS {sql_types[name]}[])" for name in names)
    columns = ", ".join(f'"{name}"' for name in names)
    return text(
        f"INSERT INTO {table.name} ({columns}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT DO NOTHING RETURNING {returning}"
    )


def _arrays(table: Table, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """``rows`` as one list per column, JSON columns as JSON text."""
    arrays: dict[str, list[Any]] = {}
    for name in rows[0]:
        values = [row[name] for row in rows]
        if isinstance(table.c[name].type, JSONB):
            values = [orjson.dumps(value).decode() for value in values]
        arrays[name] = values
    return arrays


async def defer_send_email(
    db: AsyncSession, delivery_ids: Sequence[UUID], *, at: datetime | None = None
) -> None:
    """One ``notifications.send_email`` job per email, on the session's own connection: the jobs
    exist iff the transaction commits."""
    if not delivery_ids:
        return
    connection = await (await db.connection()).get_raw_connection()
    task = queue.configure_task(SEND_EMAIL_TASK, connection=connection.driver_connection, schedule_at=at)
    jobs: list[dict[str, Any]] = [{"delivery_id": str(delivery_id)} for delivery_id in delivery_ids]
    await task.batch_defer_async(*jobs)


async def deliver(db: AsyncSession, drafts: Sequence[Draft], *, actor_id: UUID | None = None) -> Delivered:
    if not drafts:
        return Delivered([], 0)
    templates = await templates_by_type(db, {draft.type for draft in drafts})
    user_ids = {draft.user_id for draft in drafts}
    # Only what a draft needs (a broadcast batch would otherwise load 1,000 ORM users).
    recipients = {
        user.id: user
        for user in (
            await db.execute(
                select(User.id, User.email).where(User.id.in_(user_ids), User.status != UserStatus.DELETED)
            )
        ).all()
    }
    wanted = await channels_for(
        db, {(d.user_id, templates[d.type].category) for d in drafts if d.user_id in recipients}
    )

    notification_rows: list[dict[str, Any]] = []
    email_rows: list[dict[str, Any]] = []
    # A broadcast batch renders the same text for everyone: each (template, variables) once.
    renders: dict[tuple[str, bytes], Rendered] = {}
    now = datetime.now(UTC)
    for draft in drafts:
        user = recipients.get(draft.user_id)
        if user is None:
            continue  # deleted (or never existed): nobody to tell
        spec = templates[draft.type]
        channels = wanted[(user.id, spec.category)]
        rendered = _render_once(renders, spec, draft.variables)
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
                    "created_at": now,
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
                    "attempts": 0,
                    "created_at": now,
                    **keys,
                }
            )

    created: list[Notification] = []
    if notification_rows:
        created = list(
            (
                await db.scalars(
                    select(Notification).from_statement(_insert_new(_NOTIFICATIONS, notification_rows)),
                    _arrays(_NOTIFICATIONS, notification_rows),
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
                await db.execute(
                    _insert_new(_EMAILS, email_rows, returning="id"),
                    _arrays(_EMAILS, email_rows),
                )
            ).scalars()
        )
        await defer_send_email(db, email_ids)

    new_email_ids = set(email_ids)
    emailed = {row["user_id"] for row in email_rows if row["id"] in new_email_ids}
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


# --- the API: an admin's send, a user's inbox and preferences, the templates' administration ------

SEND_SCOPE = "notifications.send"
ANNOUNCEMENT = "announcement"
_SORTABLE = {"createdAt": Notification.created_at}


def render_or_422(spec: TemplateSpec, variables: Mapping[str, Any]) -> Rendered:
    """``render``, with a template that fails at run time refused as a 422 rather than a 500: an
    edited one reading an attribute a value does not have (a ``TemplateError``), or doing with a
    value what its type cannot (``{{ count + 1 }}`` given a string: a ``TypeError``)."""
    check_variables(spec, variables)
    try:
        return render(spec, variables)
    except Exception as exc:  # the sandbox raises whatever the template's operations on the values raise
        raise ValidationFailed(
            f"template {spec.type!r} does not render: {exc}",
            code="template_render_failed",
            details={"template": spec.type},
        ) from exc


def _template_out(spec: TemplateSpec, row: NotificationTemplate | None) -> TemplateOut:
    return TemplateOut(
        type=spec.type,
        category=spec.category,
        description=spec.description,
        variables=list(spec.variables),
        title=spec.title,
        message=spec.message,
        html=spec.html,
        edited_by=row.edited_by if row else None,
        updated_at=row.updated_at if row else None,
    )


class NotificationService:
    # --- sending ---------------------------------------------------------------------------------

    async def send_once(
        self, db: AsyncSession, actor: Principal, body: NotificationSend, idempotency_key: str | None
    ) -> tuple[dict[str, Any], bool]:
        """``send``, answered as JSON; with an ``idempotency_key``, a retry gets the first answer
        back (and False) and sends nothing."""
        if idempotency_key is None:
            return (await self.send(db, actor, body)).model_dump(mode="json", by_alias=True), True

        async def send_answer() -> dict[str, Any]:
            return (await self.send(db, actor, body)).model_dump(mode="json", by_alias=True)

        return await answer_once(
            db,
            scope=SEND_SCOPE,
            user_id=actor.user_id,
            key=idempotency_key,
            request=body,
            act=send_answer,
            reused_message="This Idempotency-Key was used for another send",
        )

    async def send(self, db: AsyncSession, actor: Principal, body: NotificationSend) -> SendResult:
        """Notify one user now, through ``deliver`` (their preferences pick the channels)."""
        user = await user_service.get(db, body.user_id)
        if user is None or user.status == UserStatus.DELETED:
            raise NotFound("User not found", code="user_not_found")
        if body.type is None:
            template_type, variables = ANNOUNCEMENT, {"title": body.title, "message": body.message}
        else:
            template_type, variables = body.type, dict(body.variables or {})
        spec = (await templates_by_type(db, {template_type})).get(template_type)
        if spec is None:
            raise ValidationFailed(
                f"There is no template {template_type!r}",
                code="template_unknown",
                details={"type": template_type},
            )
        render_or_422(spec, variables)  # refuse bad variables before anything is written
        delivered = await deliver(
            db,
            [
                Draft(
                    user_id=user.id, type=template_type, variables=variables, data=body.data, email=body.email
                )
            ],
            actor_id=actor.user_id,
        )
        notification = delivered.notifications[0] if delivered.notifications else None
        return SendResult(
            notification=NotificationOut.model_validate(notification) if notification else None,
            emailed=delivered.emails > 0,
        )

    # --- the inbox -------------------------------------------------------------------------------

    async def inbox(
        self, db: AsyncSession, actor: Principal, user_id: UUID, params: PageParams, *, unread_only: bool
    ) -> tuple[list[Notification], int, int]:
        """A page of the user's notifications (newest first), the total, and their unread count.
        The user themselves or an administrator; anyone else gets 404."""
        await user_service.get_visible(db, actor, user_id)  # 404 for a stranger and an unknown id
        stmt = apply_sort(
            notification_repository.inbox(user_id, unread_only=unread_only),
            params.sort,
            _SORTABLE,
            default="-createdAt",
            tiebreak=Notification.id,
        )
        items, total = await paginate(db, stmt, params)
        return items, total, await notification_repository.unread_count(db, user_id)

    async def mark_read(self, db: AsyncSession, actor: Principal, notification_id: UUID) -> Notification:
        """Mark one of the caller's notifications read. Idempotent: the first read is kept and
        recorded; someone else's notification is 404, as a missing one."""
        notification = await notification_repository.get_of_user(
            db, notification_id, actor.user_id, for_update=True
        )
        if notification is None:
            raise NotFound("Notification not found", code="notification_not_found")
        if notification.read_at is None:
            notification.read_at = datetime.now(UTC)
            await db.flush()
            await self._record_read(db, actor.user_id, [notification.id], everything=False)
        return notification

    async def mark_all_read(self, db: AsyncSession, actor: Principal) -> int:
        ids = await notification_repository.mark_all_read(db, actor.user_id, datetime.now(UTC))
        if ids:
            await self._record_read(db, actor.user_id, ids, everything=True)
        return len(ids)

    async def _record_read(
        self, db: AsyncSession, user_id: UUID, ids: list[UUID], *, everything: bool
    ) -> None:
        await record_event(
            db,
            "notification.read",
            actor_id=user_id,
            subject_id=user_id,
            payload={
                "userId": str(user_id),
                "notificationIds": [str(i) for i in ids],
                "count": len(ids),
                "all": everything,
            },
        )

    # --- preferences -----------------------------------------------------------------------------

    async def preferences(self, db: AsyncSession, user_id: UUID) -> Preferences:
        stored = await preference_repository.of_user(db, user_id)
        channels: dict[str, ChannelsOut] = {}
        for category in NotificationCategory:
            pref = stored.get(category)
            default = DEFAULT_CHANNELS[category]
            channels[category.value] = ChannelsOut(
                in_app=pref.in_app if pref else default.in_app, email=pref.email if pref else default.email
            )
        return Preferences(**channels)

    async def update_preferences(
        self, db: AsyncSession, actor: Principal, body: PreferencesUpdate
    ) -> Preferences:
        """Change the categories given (in them, the channels given); records
        ``notification.preferences_updated`` with what changed, nothing when nothing did.
        Two concurrent changes of one user take turns: each merges into what the other stored."""
        await preference_repository.lock_user(db, actor.user_id)
        current = await self.preferences(db, actor.user_id)
        rows: dict[str, tuple[bool, bool]] = {}
        changed: dict[str, dict[str, bool]] = {}
        for category in body.model_fields_set:
            wanted = getattr(body, category)
            if wanted is None:
                continue
            now: ChannelsOut = getattr(current, category)
            in_app = now.in_app if wanted.in_app is None else wanted.in_app
            email = now.email if wanted.email is None else wanted.email
            rows[category] = (in_app, email)
            if (in_app, email) != (now.in_app, now.email):
                changed[category] = {"inApp": in_app, "email": email}
        await preference_repository.upsert(db, actor.user_id, rows)
        if changed:
            await record_event(
                db,
                "notification.preferences_updated",
                actor_id=actor.user_id,
                subject_id=actor.user_id,
                payload={"userId": str(actor.user_id), "categories": dict(sorted(changed.items()))},
            )
        return await self.preferences(db, actor.user_id)

    # --- templates (administrators) ---------------------------------------------------------------

    async def list_templates(self, db: AsyncSession, sort: str | None = None) -> list[TemplateOut]:
        """Every template, by type: the stored ones, and the shipped ones not seeded yet."""
        if sort not in (None, "type"):
            raise ValidationFailed(
                f"Cannot sort by {sort!r}", code="invalid_sort", details={"allowed": ["type"]}
            )
        rows = await template_repository.all(db)
        specs = {**file_templates(), **{t: spec_of(row) for t, row in rows.items()}}
        return [_template_out(specs[t], rows.get(t)) for t in sorted(specs)]

    async def _template(
        self, db: AsyncSession, template_type: str, *, for_update: bool = False
    ) -> tuple[TemplateSpec, NotificationTemplate | None]:
        row = await template_repository.get(db, template_type, for_update=for_update)
        if row is not None:
            return spec_of(row), row
        shipped = file_templates().get(template_type)
        if shipped is None:
            raise NotFound("Template not found", code="template_not_found")
        return shipped, None

    async def get_template(self, db: AsyncSession, template_type: str) -> TemplateOut:
        return _template_out(*await self._template(db, template_type))

    async def update_template(
        self, db: AsyncSession, actor: Principal, template_type: str, body: TemplateUpdate
    ) -> TemplateOut:
        """Edit a template; from now on it is the administrators' (a changed file no longer
        overwrites it). Records ``notification_template.updated`` when something changed."""
        spec, row = await self._template(db, template_type, for_update=True)
        changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude_none=True)
        if "variables" in changes:
            changes["variables"] = tuple(dict.fromkeys(changes["variables"]))
        edited = replace(spec, **changes)
        fields = sorted(name for name in changes if getattr(edited, name) != getattr(spec, name))
        if not fields:
            return _template_out(spec, row)
        shipped = file_templates().get(template_type)
        if "variables" in fields and shipped is not None and set(edited.variables) != set(shipped.variables):
            # The code that sends this type gives exactly the shipped variables: a template
            # asking for others would fail every send.
            raise ValidationFailed(
                f"The variables of {template_type!r} are the ones its sender gives",
                code="template_variables_fixed",
                details={"variables": list(shipped.variables)},
            )
        try:
            check_template(edited)
        except TemplateInvalid as exc:
            raise ValidationFailed(
                str(exc), code="template_invalid", details={"type": template_type}
            ) from exc
        if row is None:
            row = await template_repository.store_shipped(db, spec)
        row.description, row.variables = edited.description, list(edited.variables)
        row.title, row.message, row.html = edited.title, edited.message, edited.html
        row.edited_by = actor.user_id
        row.updated_at = datetime.now(UTC)
        await db.flush()
        await record_event(
            db,
            "notification_template.updated",
            actor_id=actor.user_id,
            subject_id=row.id,
            payload={"type": template_type, "fields": fields},
        )
        return _template_out(edited, row)

    async def preview_template(
        self, db: AsyncSession, template_type: str, body: TemplatePreview
    ) -> RenderedOut:
        """Render a template (or unsaved ``title``/``message``/``html`` for it) with ``variables``;
        nothing is stored or sent."""
        spec, _ = await self._template(db, template_type)
        trial = replace(spec, **body.model_dump(exclude_unset=True, exclude_none=True, exclude={"variables"}))
        try:
            check_template(trial)
        except TemplateInvalid as exc:
            raise ValidationFailed(
                str(exc), code="template_invalid", details={"type": template_type}
            ) from exc
        rendered = render_or_422(trial, body.variables)
        return RenderedOut(type=spec.type, title=rendered.title, message=rendered.message, html=rendered.html)


notification_service = NotificationService()
