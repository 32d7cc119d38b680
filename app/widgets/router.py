"""Managing widgets (seed: the Widget service): generate one for a bought project (or a preview
of your own), read it, configure it, rotate its secret, list a user's widgets. Analytics of a
widget (``GET /api/widgets/{id}/analytics``) are served by ``app.analytics``; the public runtime
that ``embed.js`` calls is ``app.widgets.runtime``."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response, status

from app.auth.deps import CurrentPrincipal
from app.core.db import DB
from app.core.errors import ValidationFailed
from app.core.idempotency import idempotency_key
from app.core.openapi import errors
from app.core.pagination import Pagination
from app.core.runtime import runtime
from app.core.schemas import Page, PaginationInfo
from app.widgets.schemas import (
    CustomerUsageOut,
    SecretRotated,
    WidgetConfigUpdate,
    WidgetCreate,
    WidgetCreated,
    WidgetCustomers,
    WidgetOut,
)
from app.widgets.service import widget_service

router = APIRouter(prefix="/api/widgets", tags=["widgets"])

IdempotencyKey = Annotated[str, Depends(idempotency_key)]

DEFAULT_PERIOD_DAYS = 30
MAX_PERIOD_DAYS = 731  # as the analytics reports


@dataclass(frozen=True)
class Period:
    start: date
    end: date


def period(
    start: Annotated[date | None, Query(alias="from", description="First day (UTC), inclusive")] = None,
    end: Annotated[
        date | None, Query(alias="to", description="Last day (UTC), inclusive; default today")
    ] = None,
) -> Period:
    """``from``..``to``: by default the last 30 days up to today, at most two years."""
    end = end or datetime.now(UTC).date()
    start = start or end - timedelta(days=DEFAULT_PERIOD_DAYS - 1)
    details = {"from": start.isoformat(), "to": end.isoformat()}
    if start > end:
        raise ValidationFailed("`from` must not be after `to`", code="invalid_period", details=details)
    if (end - start).days + 1 > MAX_PERIOD_DAYS:
        raise ValidationFailed(
            f"The period may span at most {MAX_PERIOD_DAYS} days",
            code="period_too_long",
            details={**details, "maxDays": MAX_PERIOD_DAYS},
        )
    return Period(start, end)


@router.post(
    "/generate",
    response_model=WidgetCreated,
    status_code=status.HTTP_201_CREATED,
    response_model_exclude_unset=True,
    responses={
        **errors(401, 403, 404, 409),
        200: {
            "description": "A retry with the same Idempotency-Key: the widget made earlier, with its "
            "`secretKey` only within 10 minutes of its creation and if it was not rotated since"
        },
    },
)
async def generate(
    body: WidgetCreate, db: DB, principal: CurrentPrincipal, key: IdempotencyKey, response: Response
) -> WidgetCreated:
    """Generate an embeddable widget (`Idempotency-Key` header required). End users: for a
    project they bought (completed purchase; `purchase_required` otherwise). Builders: a
    `preview` widget of their own project. The answer carries the embed `code` and the
    `secretKey` that signs your users' ids, shown only here (a retry with the same key shows it
    again for 10 minutes, unless it was rotated; after that, rotate it to get a new one)."""
    settings = runtime().settings
    widget, created = await widget_service.generate(db, settings, principal, body, key)
    if not created:
        response.status_code = status.HTTP_200_OK
    view = await widget_service.view(db, settings, widget)
    secret = widget_service.generated_secret(settings, widget, created=created)
    # Unset (not null) when not shown: the answer then has no `secretKey` at all.
    return WidgetCreated(**view.model_dump(), **({} if secret is None else {"secret_key": secret}))


@router.get("/user/{user_id}", response_model=Page[WidgetOut], responses=errors(401, 404))
async def widgets_of_user(
    user_id: UUID, db: DB, principal: CurrentPrincipal, page: Pagination
) -> Page[WidgetOut]:
    """A user's widgets: yourself, or anyone for administrators. Sort: `createdAt` (default
    newest first), `name`."""
    items, total = await widget_service.list_of_user(db, runtime().settings, principal, user_id, page)
    return Page(items=items, pagination=PaginationInfo(total=total, page=page.page, limit=page.limit))


@router.get("/{widget_id}", response_model=WidgetOut, responses=errors(401, 404))
async def get_widget(widget_id: UUID, db: DB, principal: CurrentPrincipal) -> WidgetOut:
    """A widget with its configuration, embed code and current `status`: its owner or an
    administrator (404 for anyone else)."""
    widget = await widget_service.get_visible(db, principal, widget_id)
    return await widget_service.view(db, runtime().settings, widget)


@router.put("/{widget_id}/config", response_model=WidgetOut, responses=errors(401, 403, 404))
async def update_config(
    widget_id: UUID, body: WidgetConfigUpdate, db: DB, principal: CurrentPrincipal
) -> WidgetOut:
    """Change the name, `appearance` (colours `#rgb`/`#rrggbb`, `https` avatar URL; null resets a
    field to its default) or `behaviour` (`allowedOrigins`, `identityVerification`, `rateLimits`;
    only the fields given change). The owner only."""
    widget = await widget_service.update_config(db, principal, widget_id, body)
    return await widget_service.view(db, runtime().settings, widget)


@router.post("/{widget_id}/rotate-secret", response_model=SecretRotated, responses=errors(401, 403, 404))
async def rotate_secret(widget_id: UUID, db: DB, principal: CurrentPrincipal) -> SecretRotated:
    """Replace the secret key (the old one stops verifying identities at once). The new one is
    shown only in this answer. The owner only."""
    widget, secret = await widget_service.rotate_secret(db, runtime().settings, principal, widget_id)
    return SecretRotated(id=widget.id, secret_key=secret)


@router.get("/{widget_id}/customers", response_model=WidgetCustomers, responses=errors(401, 404, 422))
async def widget_customers(
    widget_id: UUID,
    db: DB,
    principal: CurrentPrincipal,
    page: Pagination,
    dates: Annotated[Period, Depends(period)],
) -> WidgetCustomers:
    """Usage per verified customer (the host site's users whose sessions carried a valid
    identity signature): questions, answers, tokens, cost, conversations, first and last seen,
    counted from the stored messages of `from`..`to` (UTC days; default the last 30): exact,
    server-side numbers. Anonymous visitors are not in it. The owner or an administrator (404
    for anyone else). Sort: `lastSeenAt` (default, newest first), `messages`, `answers`,
    `inputTokens`, `outputTokens`, `costUsd`, `unpricedAnswers`, `conversations`,
    `firstSeenAt`, `customerId`."""
    items, total = await widget_service.customers(db, principal, widget_id, dates.start, dates.end, page)
    return WidgetCustomers(
        widget_id=widget_id,
        from_=dates.start,
        to=dates.end,
        items=[CustomerUsageOut.model_validate(item) for item in items],
        pagination=PaginationInfo(total=total, page=page.page, limit=page.limit),
    )
