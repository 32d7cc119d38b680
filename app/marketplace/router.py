from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response, status

from app.analytics.deps import Report
from app.auth.deps import Client, CurrentPrincipal, OptionalPrincipal, require_permission
from app.auth.permissions import Perm
from app.core.db import DB
from app.core.idempotency import idempotency_key
from app.core.openapi import errors
from app.core.pagination import Pagination
from app.core.principal import Principal
from app.core.runtime import runtime
from app.core.schemas import NO_NUL, Page, PaginationInfo
from app.marketplace.schemas import (
    Category,
    ListingDetail,
    ListingStatusUpdate,
    MarketplaceAnalytics,
    PublishRequest,
    PurchaseOut,
    PurchaseRequest,
    RefundRequest,
)
from app.marketplace.service import marketplace_service

router = APIRouter(prefix="/api/marketplace", tags=["marketplace"])

Buyer = Annotated[Principal, Depends(require_permission(Perm.MARKETPLACE_PURCHASE))]
Publisher = Annotated[Principal, Depends(require_permission(Perm.MARKETPLACE_PUBLISH))]
IdempotencyKey = Annotated[str, Depends(idempotency_key)]


@router.get("/projects", response_model=Page[ListingDetail], responses=errors())
async def browse(
    db: DB,
    page: Pagination,
    q: Annotated[str | None, Query(max_length=200, pattern=NO_NUL, description="Full-text search")] = None,
    category: Category | None = None,
    tag: Annotated[str | None, Query(max_length=40, pattern=NO_NUL)] = None,
    min_price: Annotated[int | None, Query(alias="minPrice", ge=0, description="Minor units")] = None,
    max_price: Annotated[int | None, Query(alias="maxPrice", ge=0, description="Minor units")] = None,
    currency: Annotated[str | None, Query(pattern=r"^[a-zA-Z]{3}$")] = None,
    builder_id: Annotated[UUID | None, Query(alias="builderId")] = None,
) -> Page[ListingDetail]:
    """Browse active listings. Public. Sort: `publishedAt` (default newest first), `price`,
    `popularity`, `title`; `-` for descending. A search (`q`) without `sort` lists the best
    matches first (title over category over description). Held and delisted listings never
    appear."""
    items, total = await marketplace_service.browse(
        db,
        page,
        q=q,
        category=category,
        tag=tag,
        min_price=min_price,
        max_price=max_price,
        currency=currency,
        builder_id=builder_id,
    )
    return Page(
        items=[ListingDetail(**i.model_dump()) for i in items],
        pagination=PaginationInfo(total=total, page=page.page, limit=page.limit),
    )


@router.get("/analytics", response_model=MarketplaceAnalytics, responses=errors(401, 403, 404))
async def marketplace_analytics(
    db: DB,
    principal: CurrentPrincipal,
    q: Report,
    builder_id: Annotated[UUID | None, Query(alias="builderId", description="Admins: one builder")] = None,
) -> MarketplaceAnalytics:
    """Listings by status, purchases and gross by currency, top listings and a series per
    `granularity` over `from`..`to` (UTC days, inclusive). Admins see the platform (or one
    builder); builders see their own listings. Read from the published warehouse marts: the
    answer names the `warehouse` version it reflects (null, with zeros, before the first
    publish)."""
    return await marketplace_service.analytics(runtime(), db, principal, q, builder_id=builder_id)


@router.get("/projects/{project_id}", response_model=ListingDetail, responses=errors(404))
async def get_listing(
    project_id: UUID, db: DB, principal: OptionalPrincipal, client: Client
) -> ListingDetail:
    """A listing by project id (or listing id), with builder name and purchase count. Public for
    active listings; the owner and admins also see other states and the moderation trail.
    Reading an active listing counts a view (once per viewer and UTC day; not the owner's or an
    admin's) for the platform's conversion rate."""
    listing = await marketplace_service.detail(db, principal, project_id)
    await marketplace_service.record_view(db, runtime().cache, principal, client, listing)
    return listing


@router.post(
    "/projects/{project_id}/publish",
    response_model=ListingDetail,
    status_code=status.HTTP_201_CREATED,
    responses=errors(401, 403, 404, 409),
)
async def publish(project_id: UUID, body: PublishRequest, db: DB, principal: Publisher) -> ListingDetail:
    """Publish your `ready` project with a price (minor units; 0 is free), description, category
    and tags. Active at once, or `pending_review` when review is required. Paid listings on
    Stripe need a payout account."""
    listing = await marketplace_service.publish(db, runtime().settings, principal, project_id, body)
    return await marketplace_service.detail(db, principal, listing.id)


@router.put(
    "/projects/{project_id}/status", response_model=ListingDetail, responses=errors(401, 403, 404, 409)
)
async def set_listing_status(
    project_id: UUID, body: ListingStatusUpdate, db: DB, principal: CurrentPrincipal
) -> ListingDetail:
    """Admins: activate, hold or delist a listing, with a reason kept in the audit trail. A held
    listing leaves browsing and takes no purchases; what was bought keeps working."""
    listing = await marketplace_service.set_status(db, principal, project_id, body)
    return await marketplace_service.detail(db, principal, listing.id)


@router.post(
    "/purchase",
    response_model=PurchaseOut,
    status_code=status.HTTP_201_CREATED,
    responses={**errors(401, 403, 404, 409), 200: {"description": "A retry: the purchase made earlier"}},
)
async def purchase(
    body: PurchaseRequest, db: DB, principal: Buyer, key: IdempotencyKey, response: Response
) -> PurchaseOut:
    """Buy a listed project (`Idempotency-Key` header required). With the local provider the
    purchase completes at once; with Stripe it is `pending` with a `checkoutUrl` until paid.
    A retry with the same key answers 200 with the same purchase."""
    made, created = await marketplace_service.purchase(db, runtime().settings, principal, body, key)
    if not created:
        response.status_code = status.HTTP_200_OK
    return await marketplace_service.purchase_view(db, made)


@router.get("/purchases/user/{user_id}", response_model=Page[PurchaseOut], responses=errors(401, 404))
async def purchases_of_user(
    user_id: UUID,
    db: DB,
    principal: CurrentPrincipal,
    page: Pagination,
    status: Literal["pending", "completed", "failed", "refunded"] | None = None,
) -> Page[PurchaseOut]:
    """A user's purchases: yourself, or anyone for admins."""
    items, total = await marketplace_service.purchases_of(db, principal, user_id, page, status)
    return Page(items=items, pagination=PaginationInfo(total=total, page=page.page, limit=page.limit))


@router.post(
    "/purchases/{purchase_id}/refund", response_model=PurchaseOut, responses=errors(401, 403, 404, 409)
)
async def refund(purchase_id: UUID, body: RefundRequest, db: DB, principal: CurrentPrincipal) -> PurchaseOut:
    """Admins: refund a completed purchase. The money goes back through the provider, the
    ledger is reversed and the buyer loses access."""
    made = await marketplace_service.refund(db, runtime().settings, principal, purchase_id, body.reason)
    return await marketplace_service.purchase_view(db, made)
