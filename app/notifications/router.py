"""The notifications' API (seed: the Notification service): an administrator's send and broadcast,
a user's inbox, read marks and preferences, the templates' administration and the dead-letter
emails. The realtime stream (``GET /api/notifications/stream``) is ``app.notifications.stream``.

Literal paths are declared before the ``/{notification_id}`` ones, so none can be taken for an id.
"""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Query, Response, status

from app.auth.deps import CurrentPrincipal, require_permission
from app.auth.permissions import Perm
from app.core.db import DB
from app.core.errors import NotFound
from app.core.idempotency import idempotency_key
from app.core.openapi import errors
from app.core.pagination import Pagination
from app.core.principal import Principal
from app.core.schemas import Page, PaginationInfo
from app.models import EmailStatus
from app.notifications import broadcast, email
from app.notifications.schemas import (
    BroadcastCreate,
    BroadcastOut,
    EmailDeliveryOut,
    NotificationList,
    NotificationOut,
    NotificationSend,
    Preferences,
    PreferencesUpdate,
    ReadAllResult,
    RenderedOut,
    SendResult,
    TemplateOut,
    TemplatePreview,
    TemplateUpdate,
)
from app.notifications.service import notification_service

router = APIRouter(prefix="/api/notifications", tags=["notifications"])

# Sends and broadcasts come from administrators. There is no service credential in the app:
# the platform's own code (the event dispatcher, the broadcast job) calls ``deliver`` directly.
Admin = Annotated[Principal, Depends(require_permission(Perm.PLATFORM_ADMIN))]
TemplateType = Annotated[str, Path(max_length=64, description="The template's type, e.g. `sale.new`")]


def optional_idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Optional: a unique key per intended send; a retry with the same key returns "
            "the first answer instead of sending twice.",
        ),
    ] = None,
) -> str | None:
    return None if key is None else idempotency_key(key)


OptionalIdempotencyKey = Annotated[str | None, Depends(optional_idempotency_key)]


# --- sending (administrators) ------------------------------------------------------------------


@router.post(
    "/send",
    response_model=SendResult,
    status_code=status.HTTP_201_CREATED,
    responses={
        **errors(401, 403, 404, 409),
        200: {"description": "A retry with the same Idempotency-Key: the first answer, nothing sent"},
    },
)
async def send(
    body: NotificationSend, db: DB, principal: Admin, key: OptionalIdempotencyKey, response: Response
) -> Any:
    """Administrators: notify one user, with a template (`type` and exactly its `variables`; 422
    `template_unknown`, `template_variables_invalid`) or a plain `title` and `message` (the
    `announcement` template). The user's preferences for the template's category pick the
    channels: the answer's `notification` is null when they turned the in-app channel off, and
    `emailed` says whether an email was queued (`email: false` never emails). A missing or
    deleted user is 404 `user_not_found`. With an `Idempotency-Key`, a retry answers 200 with the
    first answer and sends nothing."""
    answer, sent = await notification_service.send_once(db, principal, body, key)
    if not sent:
        response.status_code = status.HTTP_200_OK
    return answer


@router.post(
    "/broadcast",
    response_model=BroadcastOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **errors(401, 403, 409),
        200: {"description": "A retry with the same Idempotency-Key: the broadcast made earlier"},
    },
)
async def create_broadcast(
    body: BroadcastCreate, db: DB, principal: Admin, key: OptionalIdempotencyKey, response: Response
) -> Any:
    """Administrators: tell every user (`audience` `all`) or the holders of one persona
    (`super_admin`, `builder`, `end_user`; else 422 `audience_invalid`). Answers at once with the
    queued broadcast; the worker delivers it in batches (follow it with
    `GET /api/notifications/broadcasts/{id}`). `sendEmail` also emails those whose preference for
    announcements allows it. An `announcement` template that cannot render the text is 422
    `template_render_failed`; an `Idempotency-Key` used before for another broadcast is 409
    `idempotency_key_reused`."""
    created, new = await broadcast.create_broadcast(
        db,
        admin_id=principal.user_id,
        audience=body.audience,
        title=body.title,
        message=body.message,
        send_email=body.send_email,
        idempotency_key=key,
    )
    if not new:
        response.status_code = status.HTTP_200_OK
    return BroadcastOut.model_validate(created)


@router.get("/broadcasts/{broadcast_id}", response_model=BroadcastOut, responses=errors(401, 403, 404))
async def get_broadcast(broadcast_id: UUID, db: DB, _: Admin) -> Any:
    """Administrators: a broadcast's progress (`status`, `total` recipients, `delivered`)."""
    found = await broadcast.get_broadcast(db, broadcast_id)
    if found is None:
        raise NotFound("Broadcast not found", code="broadcast_not_found")
    return BroadcastOut.model_validate(found)


# --- dead letters (administrators) -------------------------------------------------------------


@router.get("/emails", response_model=Page[EmailDeliveryOut], responses=errors(401, 403))
async def list_emails(
    db: DB,
    _: Admin,
    page: Pagination,
    email_status: Annotated[
        EmailStatus | None, Query(alias="status", description="`dead`: the emails every try failed")
    ] = None,
) -> Page[EmailDeliveryOut]:
    """Administrators: the emails queued for sending, newest first (`sort`: `createdAt`,
    `-createdAt`), of one `status` if given (`pending`, `retrying`, `sent`, `dead`, `skipped`);
    `?status=dead` lists the dead letters with their `lastError` and `attempts`."""
    items, total = await email.list_deliveries(db, email_status, page)
    return Page(
        items=[EmailDeliveryOut.model_validate(item) for item in items],
        pagination=PaginationInfo(total=total, page=page.page, limit=page.limit),
    )


@router.post(
    "/emails/{delivery_id}/retry", response_model=EmailDeliveryOut, responses=errors(401, 403, 404, 409)
)
async def retry_email(delivery_id: UUID, db: DB, _: Admin) -> Any:
    """Administrators: send a dead email again (its tries start over)."""
    return EmailDeliveryOut.model_validate(await email.retry_delivery(db, delivery_id))


# --- templates (administrators) ----------------------------------------------------------------


@router.get("/templates", response_model=Page[TemplateOut], responses=errors(401, 403))
async def list_templates(db: DB, _: Admin, page: Pagination) -> Page[TemplateOut]:
    """Administrators: every notification template, by type (`sort`: `type` only)."""
    templates = await notification_service.list_templates(db, page.sort)
    return Page(
        items=templates[page.offset : page.offset + page.limit],
        pagination=PaginationInfo(total=len(templates), page=page.page, limit=page.limit),
    )


@router.get("/templates/{template_type}", response_model=TemplateOut, responses=errors(401, 403, 404))
async def get_template(template_type: TemplateType, db: DB, _: Admin) -> TemplateOut:
    """Administrators: one template."""
    return await notification_service.get_template(db, template_type)


@router.put("/templates/{template_type}", response_model=TemplateOut, responses=errors(401, 403, 404))
async def update_template(
    template_type: TemplateType, body: TemplateUpdate, db: DB, principal: Admin
) -> TemplateOut:
    """Administrators: edit `title`, `message`, `html` (Jinja2; the HTML is autoescaped) or
    `description`. A template must parse and use only its variables (422 `template_invalid`);
    the variables of a template the platform sends are fixed (422 `template_variables_fixed`).
    An edited template is no longer updated from the shipped file."""
    return await notification_service.update_template(db, principal, template_type, body)


@router.post(
    "/templates/{template_type}/preview", response_model=RenderedOut, responses=errors(401, 403, 404)
)
async def preview_template(
    template_type: TemplateType, body: TemplatePreview, db: DB, _: Admin
) -> RenderedOut:
    """Administrators: render a template with `variables` (exactly its own; 422
    `template_variables_invalid`), or try unsaved `title`/`message`/`html`. Nothing is sent."""
    return await notification_service.preview_template(db, template_type, body)


# --- the caller's own inbox and preferences ----------------------------------------------------


@router.get("/preferences", response_model=Preferences, responses=errors(401))
async def get_preferences(db: DB, principal: CurrentPrincipal) -> Preferences:
    """Your channels per category (`inApp`, `email`): your choice, else the category's default."""
    return await notification_service.preferences(db, principal.user_id)


@router.put("/preferences", response_model=Preferences, responses=errors(401))
async def update_preferences(body: PreferencesUpdate, db: DB, principal: CurrentPrincipal) -> Preferences:
    """Change your channels: only the categories given, and in them only `inApp`/`email` given
    (an unknown category is 422). Answers every category."""
    return await notification_service.update_preferences(db, principal, body)


@router.put("/read-all", response_model=ReadAllResult, responses=errors(401))
async def mark_all_read(db: DB, principal: CurrentPrincipal) -> ReadAllResult:
    """Mark all your unread notifications read; `updated` says how many."""
    return ReadAllResult(updated=await notification_service.mark_all_read(db, principal))


@router.get("/user/{user_id}", response_model=NotificationList, responses=errors(401, 404))
async def notifications_of_user(
    user_id: UUID,
    db: DB,
    principal: CurrentPrincipal,
    page: Pagination,
    unread: Annotated[bool, Query(description="true: only the unread ones")] = False,
) -> NotificationList:
    """A user's notifications, newest first (`sort`: `createdAt`, `-createdAt`), with their
    `unreadCount`: yourself, or anyone for administrators (404 for anyone else)."""
    items, total, unread_count = await notification_service.inbox(
        db, principal, user_id, page, unread_only=unread
    )
    return NotificationList(
        items=[NotificationOut.model_validate(item) for item in items],
        pagination=PaginationInfo(total=total, page=page.page, limit=page.limit),
        unread_count=unread_count,
    )


@router.put("/{notification_id}/read", response_model=NotificationOut, responses=errors(401, 404))
async def mark_read(notification_id: UUID, db: DB, principal: CurrentPrincipal) -> NotificationOut:
    """Mark one of your notifications read (again: nothing changes). Only its recipient: anyone
    else, administrators included, gets 404."""
    return NotificationOut.model_validate(
        await notification_service.mark_read(db, principal, notification_id)
    )
