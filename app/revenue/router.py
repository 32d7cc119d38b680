from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query, Response

from app.auth.deps import CurrentPrincipal, require_permission
from app.auth.permissions import Perm
from app.core.db import DB
from app.core.idempotency import idempotency_key
from app.core.openapi import errors
from app.core.principal import Principal
from app.core.runtime import runtime
from app.revenue.schemas import (
    CalculateOut,
    CalculateRequest,
    DistributeOut,
    DistributeRequest,
    Period,
    ProjectRevenue,
    UserRevenue,
)
from app.revenue.service import revenue_service

router = APIRouter(prefix="/api/revenue", tags=["revenue"])

Admin = Annotated[Principal, Depends(require_permission(Perm.PLATFORM_ADMIN))]
IdempotencyKey = Annotated[str, Depends(idempotency_key)]
PeriodQuery = Annotated[Period, Query(description="Bucket of the series (UTC)")]
FromQuery = Annotated[datetime | None, Query(alias="from", description="Series from (ISO 8601, inclusive)")]
ToQuery = Annotated[datetime | None, Query(description="Series until (ISO 8601, exclusive)")]


@router.post("/calculate", response_model=CalculateOut, responses=errors(401, 403, 404))
async def calculate(body: CalculateRequest, db: DB, principal: CurrentPrincipal) -> CalculateOut:
    """Sales, fees, builder shares and refunds of a period, per currency and per project, from
    the ledger. Builders see their own; admins any builder's (`builderId`) or the whole platform.
    With `priceMinor`, also the split of one sale at that price (the builder's plan fee unless
    `platformFeeBps` is given; the processor fee estimated). Writes nothing."""
    return await revenue_service.calculate(db, runtime().settings, principal, body)


@router.post(
    "/distribute",
    response_model=DistributeOut,
    responses={
        **errors(401, 403, 409),
        200: {
            "description": "The payouts made (or, with `Idempotent-Replayed: true`, the answer to an "
            "earlier request with the same key)"
        },
    },
)
async def distribute(
    principal: Admin,
    key: IdempotencyKey,
    response: Response,
    body: Annotated[DistributeRequest | None, Body()] = None,
) -> DistributeOut:
    """Admins: pay every builder whose available balance (past the settlement delay) reaches the
    payout minimum, one payout per builder and currency (`Idempotency-Key` header required).
    On Stripe a builder needs a payout account with payouts enabled, else they are in `skipped`.
    A refused transfer marks its payout `failed` and restores the balance, so the next
    distribution retries it. A retry with the same key returns the first answer."""
    # No request session: each payout commits on its own (see app/revenue/service.py).
    result, replayed = await revenue_service.distribute(
        runtime().settings, actor_id=principal.user_id, key=key, body=body or DistributeRequest()
    )
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return result


@router.get("/user/{user_id}", response_model=UserRevenue, responses=errors(401, 404))
async def user_revenue(
    user_id: UUID,
    db: DB,
    principal: CurrentPrincipal,
    period: PeriodQuery = "month",
    from_: FromQuery = None,
    to: ToQuery = None,
) -> UserRevenue:
    """A builder's money per currency (earned, pending in the settlement delay, refunded, paid
    out, in transit, available, balance) now, and their sales and payouts by `period` between
    `from` and `to`. Yourself, or anyone for admins; others get 404."""
    return await revenue_service.user_revenue(
        db, runtime().settings, principal, user_id, period=period, start=from_, end=to
    )


@router.get("/project/{project_id}", response_model=ProjectRevenue, responses=errors(401, 404))
async def project_revenue(
    project_id: UUID,
    db: DB,
    principal: CurrentPrincipal,
    period: PeriodQuery = "month",
    from_: FromQuery = None,
    to: ToQuery = None,
) -> ProjectRevenue:
    """One project's gross, processor and platform fees, builder share, purchases and refunds
    between `from` and `to`, and by `period`. Its owner, or admins; others get 404."""
    return await revenue_service.project_revenue(
        db, principal, project_id, period=period, start=from_, end=to
    )
