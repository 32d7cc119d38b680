"""Domain events -> the notifications they cause (``Draft``s for ``service.deliver``).

One handler per event type, registered in ``HANDLERS``; an event type without a handler notifies
nobody. A handler reads the event's payload (``docs/events.md``) and loads the names it needs
(users, projects, invoices, plans) in the dispatcher's transaction; it never changes anything.
Every draft carries the event's id as ``source_event_id``, so an event handled twice notifies
nobody twice (the unique keys of ``notifications`` and ``email_deliveries``).

Decisions (also in ``docs/notifications.md``, "Events"):

* every new account gets the welcome, whoever made it (self sign-up, an administrator,
  ``bazaar create-admin``): the person behind an account made for them needs it most;
* a marketplace purchase mails its buyer one receipt that names the purchase's invoice; the
  ``invoice.issued`` of a ``purchase`` invoice notifies nobody (two mails for one purchase would
  be noise). Plan and charge invoices are notified on ``invoice.issued``;
* ``listing.published`` is ``listing.live``, or ``listing.submitted`` when it waits for a review
  (the publishing flow's last step); ``listing.activated`` (after a review, or a hold lifted) is
  ``listing.approved``; ``listing.held`` and ``listing.delisted`` quote the administrator's reason.
"""

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.html import format_money
from app.models import Invoice, InvoiceLine, Persona, Plan, Project, User, UserRole, UserStatus
from app.notifications.service import Draft


@dataclass(frozen=True)
class Event:
    """The parts of an ``outbox_events`` row a handler reads."""

    event_id: UUID
    type: str
    subject_id: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class Links:
    """Where a notification's link leads: pages of the dashboard under ``PUBLIC_BASE_URL``."""

    base_url: str

    def page(self, path: str) -> str:
        return self.base_url.rstrip("/") + path


Handler = Callable[[AsyncSession, Event, Links], Awaitable[list[Draft]]]
HANDLERS: dict[str, Handler] = {}


def handles(*event_types: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for event_type in event_types:
            HANDLERS[event_type] = handler
        return handler

    return register


def _draft(event: Event, user_id: UUID, type: str, variables: dict[str, Any], data: dict[str, Any]) -> Draft:
    return Draft(user_id=user_id, type=type, variables=variables, data=data, source_event_id=event.event_id)


async def _names(db: AsyncSession, user_ids: set[UUID]) -> dict[UUID, str]:
    """Names of the users among ``user_ids`` that can still be told anything (not deleted)."""
    rows = await db.execute(
        select(User.id, User.name).where(User.id.in_(user_ids), User.status != UserStatus.DELETED)
    )
    return {row.id: row.name for row in rows}


async def _project_name(db: AsyncSession, project_id: str) -> str:
    return str(await db.scalar(select(Project.name).where(Project.id == UUID(project_id))) or "your project")


def _money(payload: Mapping[str, Any], field: str) -> str:
    return format_money(int(payload[field]), str(payload["currency"]))


def _month(text: str) -> str:
    """``2026-11`` -> ``November 2026``."""
    year, month = (int(part) for part in text.split("-"))
    return date(year, month, 1).strftime("%B %Y")


# --- accounts -----------------------------------------------------------------------------------


@handles("user.created")
async def welcome(db: AsyncSession, event: Event, links: Links) -> list[Draft]:
    user_id = UUID(str(event.subject_id))
    names = await _names(db, {user_id})
    if user_id not in names:
        return []
    return [
        _draft(
            event,
            user_id,
            "welcome",
            {"name": names[user_id], "dashboardUrl": links.page("/dashboard")},
            {"url": links.page("/dashboard")},
        )
    ]


# --- marketplace ----------------------------------------------------------------------------------


# How each listing event reaches the listing's builder: the template, where its link leads (the
# public listing, or the builder's project page) and whether it quotes the administrator's reason.
# A publish is the publishing flow's last step: live at once, or waiting for a review.
_LISTING_NOTICES: dict[tuple[str, str | None], tuple[str, str, bool]] = {
    ("listing.published", "active"): ("listing.live", "listing", False),
    ("listing.published", "pending_review"): ("listing.submitted", "project", False),
    ("listing.activated", None): ("listing.approved", "listing", False),
    ("listing.held", None): ("listing.held", "project", True),
    ("listing.delisted", None): ("listing.delisted", "project", True),
}


@handles("listing.published", "listing.activated", "listing.held", "listing.delisted")
async def listing_changed(db: AsyncSession, event: Event, links: Links) -> list[Draft]:
    payload = event.payload
    if event.type == "listing.published":
        status = "pending_review" if payload.get("status") == "pending_review" else "active"
        template, link, quotes_reason = _LISTING_NOTICES[(event.type, status)]
    else:
        template, link, quotes_reason = _LISTING_NOTICES[(event.type, None)]
    builder_id = UUID(payload["builderId"])
    names = await _names(db, {builder_id})
    if builder_id not in names:
        return []
    project_id = payload["projectId"]
    if link == "listing":
        url, url_variable = links.page(f"/marketplace/{project_id}"), "listingUrl"
    else:
        url, url_variable = links.page(f"/dashboard/projects/{project_id}"), "projectUrl"
    variables = {
        "name": names[builder_id],
        "projectName": await _project_name(db, project_id),
        url_variable: url,
    }
    data = {"listingId": payload["listingId"], "projectId": project_id, "url": url}
    if quotes_reason:
        variables["reason"] = data["reason"] = payload.get("reason") or "no reason given"
    return [_draft(event, builder_id, template, variables, data)]


@handles("purchase.completed")
async def purchase_completed(db: AsyncSession, event: Event, links: Links) -> list[Draft]:
    """The builder's new sale and the buyer's receipt (which names the invoice)."""
    payload = event.payload
    builder_id, buyer_id = UUID(payload["builderId"]), UUID(payload["buyerId"])
    names = await _names(db, {builder_id, buyer_id})
    project_name = await _project_name(db, payload["projectId"])
    amount = _money(payload, "grossMinor")
    data = {"purchaseId": payload["purchaseId"], "projectId": payload["projectId"]}
    drafts = []
    if builder_id in names:
        url = links.page("/dashboard/revenue")
        variables = {
            "name": names[builder_id],
            "projectName": project_name,
            "buyerName": names.get(buyer_id, "A buyer"),
            "amount": amount,
            "share": _money(payload, "builderShareMinor"),
            "salesUrl": url,
        }
        drafts.append(_draft(event, builder_id, "sale.new", variables, {**data, "url": url}))
    if buyer_id in names:
        invoice_id = payload.get("invoiceId")
        number = (
            await db.scalar(select(Invoice.number).where(Invoice.id == UUID(invoice_id)))
            if invoice_id
            else None
        )
        url = links.page(f"/dashboard/purchases/{payload['purchaseId']}")
        variables = {
            "name": names[buyer_id],
            "projectName": project_name,
            "amount": amount,
            "invoiceNumber": number or "",
            "purchaseUrl": url,
        }
        drafts.append(
            _draft(
                event, buyer_id, "purchase.receipt", variables, {**data, "invoiceId": invoice_id, "url": url}
            )
        )
    return drafts


# --- money ----------------------------------------------------------------------------------------


@handles("payout.paid", "payout.failed")
async def payout_settled(db: AsyncSession, event: Event, links: Links) -> list[Draft]:
    payload = event.payload
    builder_id = UUID(payload["builderId"])
    names = await _names(db, {builder_id})
    if builder_id not in names:
        return []
    url = links.page("/dashboard/revenue/payouts")
    variables = {"name": names[builder_id], "amount": _money(payload, "amountMinor"), "payoutsUrl": url}
    data = {"payoutId": payload["payoutId"], "url": url}
    if event.type == "payout.paid":
        return [_draft(event, builder_id, "payout.sent", variables, data)]
    variables["reason"] = payload.get("reason") or "the provider refused the transfer"
    return [_draft(event, builder_id, "payout.failed", variables, data)]


@handles("invoice.issued")
async def invoice_issued(db: AsyncSession, event: Event, links: Links) -> list[Draft]:
    payload = event.payload
    if payload["kind"] == "purchase":
        return []  # the buyer's receipt (purchase.completed) names it
    user_id = UUID(payload["userId"])
    names = await _names(db, {user_id})
    if user_id not in names:
        return []
    url = links.page(f"/dashboard/invoices/{payload['invoiceId']}")
    variables = {
        "name": names[user_id],
        "number": payload["number"],
        "total": _money(payload, "totalMinor"),
        "description": await _invoice_description(db, payload),
        "invoiceUrl": url,
    }
    return [
        _draft(event, user_id, "invoice.issued", variables, {"invoiceId": payload["invoiceId"], "url": url})
    ]


async def _invoice_description(db: AsyncSession, payload: Mapping[str, Any]) -> str:
    if payload["kind"] == "plan" and payload.get("reference"):
        plan = await db.scalar(select(Plan.name).where(Plan.code == payload["reference"]))
        return f"the {plan or payload['reference']} plan"
    lines = (
        await db.scalars(
            select(InvoiceLine.description)
            .where(InvoiceLine.invoice_id == UUID(payload["invoiceId"]))
            .order_by(InvoiceLine.position)
        )
    ).all()
    if not lines:
        return "a charge"
    return lines[0] + (f" and {len(lines) - 1} more" if len(lines) > 1 else "")


# --- operations -----------------------------------------------------------------------------------


@handles("mcp_client.health_failed")
async def mcp_client_failing(db: AsyncSession, event: Event, links: Links) -> list[Draft]:
    """Every active super admin: they are the ones who can fix a platform MCP client."""
    admins = await db.execute(
        select(User.id, User.name)
        .join(UserRole, UserRole.user_id == User.id)
        .where(UserRole.role == Persona.SUPER_ADMIN, User.status == UserStatus.ACTIVE)
        .order_by(User.id)
    )
    payload = event.payload
    url = links.page(f"/dashboard/admin/mcp-clients/{event.subject_id}")
    data = {"mcpClientId": event.subject_id, "connectionId": payload.get("connectionId"), "url": url}
    return [
        _draft(
            event,
            admin.id,
            "mcp_client.failing",
            {
                "name": admin.name,
                "clientName": payload.get("name") or "an MCP client",
                "error": payload.get("error") or "no answer",
                "clientUrl": url,
            },
            data,
        )
        for admin in admins
    ]


# --- widgets --------------------------------------------------------------------------------------


@handles("widget.quota_warning", "widget.quota_reached")
async def widget_quota(db: AsyncSession, event: Event, links: Links) -> list[Draft]:
    payload = event.payload
    owner_id = UUID(payload["userId"])
    names = await _names(db, {owner_id})
    if owner_id not in names:
        return []
    url = links.page(f"/dashboard/widgets/{payload['widgetId']}")
    variables = {
        "name": names[owner_id],
        "projectName": await _project_name(db, payload["projectId"]),
        "used": payload["used"],
        "limit": payload["limit"],
        "month": _month(payload["month"]),
        "widgetUrl": url,
    }
    data = {"widgetId": payload["widgetId"], "projectId": payload["projectId"], "month": payload["month"]}
    return [_draft(event, owner_id, event.type, variables, {**data, "url": url})]
