from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.responses import HTMLResponse

from app.auth.deps import CurrentPrincipal, require_permission
from app.auth.permissions import Perm
from app.billing.schemas import ChargeRequest, InvoiceDetail, InvoiceKind, InvoiceOut, InvoiceStatusName
from app.billing.service import billing_service
from app.core.db import DB
from app.core.idempotency import idempotency_key
from app.core.openapi import errors
from app.core.pagination import Pagination
from app.core.principal import Principal
from app.core.runtime import runtime
from app.core.schemas import Page, PaginationInfo
from app.models import Invoice

router = APIRouter(prefix="/api/billing", tags=["billing"])

BillingAdmin = Annotated[Principal, Depends(require_permission(Perm.PLATFORM_ADMIN))]
IdempotencyKey = Annotated[str, Depends(idempotency_key)]


async def get_visible_invoice(invoice_id: UUID, db: DB, principal: CurrentPrincipal) -> Invoice:
    return await billing_service.get_visible(db, principal, invoice_id)


VisibleInvoice = Annotated[Invoice, Depends(get_visible_invoice)]

# The page shows text people typed (names, descriptions): it may load and run nothing.
_HTML_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
}


@router.get("/invoices", response_model=Page[InvoiceOut], responses=errors(401, 403))
async def list_invoices(
    db: DB,
    principal: CurrentPrincipal,
    page: Pagination,
    user_id: Annotated[UUID | None, Query(alias="userId", description="Whose invoices (admins)")] = None,
    status: InvoiceStatusName | None = None,
    kind: InvoiceKind | None = None,
) -> Page[InvoiceOut]:
    """Your invoices; admins see everyone's and filter by `userId`. Filters: `status`
    (draft/open/paid/void), `kind` (purchase/plan/charge). Sort: `createdAt` (default newest
    first), `issuedAt`, `dueAt`, `number`, `totalMinor`; `-` for descending."""
    items, total = await billing_service.list_visible(
        db, principal, page, user_id=user_id, status=status, kind=kind
    )
    return Page(items=items, pagination=PaginationInfo(total=total, page=page.page, limit=page.limit))


@router.get("/invoices/{invoice_id}", response_model=InvoiceDetail, responses=errors(401, 404))
async def get_invoice(invoice: VisibleInvoice, db: DB) -> InvoiceDetail:
    """An invoice with its line items and latest payment: its customer, or admins. Others get 404."""
    return await billing_service.detail(db, invoice)


@router.get(
    "/invoices/{invoice_id}/html",
    response_class=HTMLResponse,
    responses={
        **errors(401, 404),
        200: {"description": "The invoice as a printable HTML page", "content": {"text/html": {}}},
    },
)
async def get_invoice_html(invoice: VisibleInvoice, db: DB) -> HTMLResponse:
    """The invoice as a self-contained, printable HTML page (seller, buyer, dates, line items,
    tax, total, PAID/VOID stamp). Its customer, or admins."""
    page = await billing_service.render_html(db, runtime().settings, invoice)
    return HTMLResponse(page, headers=_HTML_HEADERS)


@router.post(
    "/charge",
    response_model=InvoiceDetail,
    status_code=status.HTTP_201_CREATED,
    responses={
        **errors(401, 403, 404, 409, 503),
        200: {"description": "A retry: the answer given to the first request with this key"},
    },
)
async def charge(
    body: ChargeRequest, db: DB, principal: BillingAdmin, key: IdempotencyKey, response: Response
) -> Any:
    """Admins: charge a user (`Idempotency-Key` header required). Issues a `charge` invoice with
    tax added on top and asks the provider for its total: with the local provider it is paid at
    once, with Stripe it stays `open` with `payment.checkoutUrl` until paid. A retry with the same
    key answers 200 with the first answer and charges nothing."""
    answer, charged = await billing_service.charge_once(
        db, runtime().settings, actor_id=principal.user_id, body=body, idempotency_key=key
    )
    if not charged:
        response.status_code = status.HTTP_200_OK
    return answer
