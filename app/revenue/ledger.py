"""Posting to the double-entry ledger.

Every money movement is one ``LedgerTransaction`` whose entries sum to zero per currency
(Postgres refuses to commit one that does not). ``(kind, reference)`` is unique, so the same
settlement, refund or payout can never be posted twice. Accounts:

* ``platform:cash``: what the platform holds at the processor;
* ``platform:revenue``: platform fees earned on sales; ``platform:billing_revenue``: plans and
  charges; ``platform:fee_expense``: processor fees the platform bears (not returned on refunds);
* ``platform:payouts_in_transit``: paid out to a builder but not yet confirmed;
* ``platform:tax_payable``: tax collected on plan and charge invoices, owed to the authority;
* ``builder:<user id>:payable``: what the platform owes a builder (a credit balance).

A sale of gross G with processor fee F, platform fee P and builder share B (G = F + P + B):

    platform:cash          +G   gross
    platform:cash          -F   processor_fee
    platform:revenue       -P   platform_fee
    builder:<id>:payable   -B   builder_share
"""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict
from app.core.events import record_event
from app.models import LedgerEntry, LedgerTransaction
from app.revenue.splits import Split

CASH = "platform:cash"
REVENUE = "platform:revenue"
BILLING_REVENUE = "platform:billing_revenue"
FEE_EXPENSE = "platform:fee_expense"
IN_TRANSIT = "platform:payouts_in_transit"
TAX_PAYABLE = "platform:tax_payable"


def builder_payable(builder_id: UUID) -> str:
    return f"builder:{builder_id}:payable"


@dataclass(frozen=True)
class Leg:
    account: str
    leg: str
    amount_minor: int


class UnbalancedTransaction(ValueError):
    pass


async def post(
    db: AsyncSession,
    *,
    kind: str,
    reference: str,
    currency: str,
    legs: list[Leg],
    actor_id: UUID | None,
    builder_id: UUID | None = None,
    project_id: UUID | None = None,
    purchase_id: UUID | None = None,
    memo: str = "",
    details: dict[str, Any] | None = None,
) -> LedgerTransaction:
    """Post one balanced transaction and record its ``ledger.entry_posted`` event."""
    legs = [leg for leg in legs if leg.amount_minor != 0]
    if sum(leg.amount_minor for leg in legs) != 0:
        raise UnbalancedTransaction(f"{kind} {reference} does not balance: {legs}")
    existing = await db.execute(
        select(LedgerTransaction.id).where(
            LedgerTransaction.kind == kind, LedgerTransaction.reference == reference
        )
    )
    if existing.first() is not None:
        raise Conflict(f"{kind} {reference} is already posted", code="already_posted")
    transaction = LedgerTransaction(kind=kind, reference=reference, memo=memo, details=details or {})
    db.add(transaction)
    await db.flush()
    for leg in legs:
        db.add(
            LedgerEntry(
                transaction_id=transaction.id,
                account=leg.account,
                leg=leg.leg,
                amount_minor=leg.amount_minor,
                currency=currency,
                builder_id=builder_id,
                project_id=project_id,
                purchase_id=purchase_id,
                posted_at=transaction.posted_at,
            )
        )
    await record_event(
        db,
        "ledger.entry_posted",
        actor_id=actor_id,
        subject_id=transaction.id,
        payload={
            "kind": kind,
            "reference": reference,
            "currency": currency,
            "builderId": str(builder_id) if builder_id else None,
            "projectId": str(project_id) if project_id else None,
            "purchaseId": str(purchase_id) if purchase_id else None,
            "entries": [{"account": e.account, "leg": e.leg, "amountMinor": e.amount_minor} for e in legs],
        },
    )
    await db.flush()
    return transaction


def sale_legs(split: Split, builder_id: UUID) -> list[Leg]:
    return [
        Leg(CASH, "gross", split.gross_minor),
        Leg(CASH, "processor_fee", -split.processor_fee_minor),
        Leg(REVENUE, "platform_fee", -split.platform_fee_minor),
        Leg(builder_payable(builder_id), "builder_share", -split.builder_share_minor),
    ]


def refund_legs(split: Split, builder_id: UUID) -> list[Leg]:
    """The sale reversed. The processor keeps its fee, so the platform also books that loss."""
    reversed_sale = [Leg(e.account, e.leg, -e.amount_minor) for e in sale_legs(split, builder_id)]
    fee = split.processor_fee_minor
    return [
        *reversed_sale,
        Leg(CASH, "unrefunded_processor_fee", -fee),
        Leg(FEE_EXPENSE, "unrefunded_processor_fee", fee),
    ]


def payout_legs(builder_id: UUID, amount_minor: int) -> list[Leg]:
    return [
        Leg(builder_payable(builder_id), "payout", amount_minor),
        Leg(IN_TRANSIT, "payout", -amount_minor),
    ]


def payout_paid_legs(amount_minor: int) -> list[Leg]:
    return [Leg(IN_TRANSIT, "payout_paid", amount_minor), Leg(CASH, "payout_paid", -amount_minor)]


def payout_failed_legs(builder_id: UUID, amount_minor: int) -> list[Leg]:
    return [
        Leg(builder_payable(builder_id), "payout_failed", -amount_minor),
        Leg(IN_TRANSIT, "payout_failed", amount_minor),
    ]


def billing_legs(gross_minor: int, processor_fee_minor: int, tax_minor: int = 0) -> list[Leg]:
    """A paid plan or charge: the tax on the invoice is owed to the tax authority, not revenue."""
    return [
        Leg(CASH, "gross", gross_minor),
        Leg(BILLING_REVENUE, "billing_revenue", -(gross_minor - tax_minor)),
        Leg(TAX_PAYABLE, "tax", -tax_minor),
        Leg(CASH, "processor_fee", -processor_fee_minor),
        Leg(FEE_EXPENSE, "processor_fee", processor_fee_minor),
    ]
