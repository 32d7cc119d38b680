"""The marketplace journey's steps through the real API, and what the database says afterwards.

Each step asserts the status it expects (``expect=``), so a test reads as the journey it checks
and a failing step shows the API's answer.
"""

from collections import Counter
from typing import Any
from uuid import UUID, uuid4

import httpx
from sqlalchemy import func, select

from app.core.db import sessionmaker
from app.models import Invoice, LedgerEntry, LedgerTransaction, Payment, Purchase
from tests.factories import Account, create_project

PUBLISH_BODY: dict[str, Any] = {
    "priceMinor": 1900,
    "currency": "usd",
    "description": "Answers customer questions from your help centre.",
    "category": "customer-support",
    "tags": ["support"],
}


async def ready_project(client: httpx.AsyncClient, builder: Account, **fields: Any) -> UUID:
    """A project of ``builder`` moved draft -> in_development -> ready by its owner."""
    project_id = await create_project(builder, **fields)
    for status in ("in_development", "ready"):
        response = await client.put(
            f"/api/projects/{project_id}/status", json={"status": status}, headers=builder.headers
        )
        assert response.status_code == 200, response.text
    return project_id


async def publish(
    client: httpx.AsyncClient,
    builder: Account,
    project_id: UUID,
    *,
    expect: int = 201,
    **fields: Any,
) -> dict[str, Any]:
    """``POST /publish`` with ``PUBLISH_BODY`` overridden by ``fields`` (camelCase keys)."""
    body = {**PUBLISH_BODY, **fields}
    response = await client.post(
        f"/api/marketplace/projects/{project_id}/publish", json=body, headers=builder.headers
    )
    assert response.status_code == expect, response.text
    return dict(response.json())


async def listed_project(client: httpx.AsyncClient, builder: Account, **fields: Any) -> UUID:
    """A ready project of ``builder``, published with ``PUBLISH_BODY`` + ``fields``."""
    project_id = await ready_project(client, builder, name=fields.pop("name", "Support Copilot"))
    await publish(client, builder, project_id, **fields)
    return project_id


async def buy(
    client: httpx.AsyncClient,
    buyer: Account,
    project_id: UUID,
    *,
    key: str | None = None,
    expect: int = 201,
) -> dict[str, Any]:
    response = await client.post(
        "/api/marketplace/purchase",
        json={"projectId": str(project_id)},
        headers={**buyer.headers, "Idempotency-Key": key or str(uuid4())},
    )
    assert response.status_code == expect, response.text
    return dict(response.json())


async def moderate(
    client: httpx.AsyncClient,
    admin: Account,
    project_id: UUID,
    status: str,
    *,
    reason: str = "Moderation",
    expect: int = 200,
) -> dict[str, Any]:
    response = await client.put(
        f"/api/marketplace/projects/{project_id}/status",
        json={"status": status, "reason": reason},
        headers=admin.headers,
    )
    assert response.status_code == expect, response.text
    return dict(response.json())


async def refund(
    client: httpx.AsyncClient,
    admin: Account,
    purchase_id: str,
    *,
    reason: str = "Customer asked",
    expect: int = 200,
) -> dict[str, Any]:
    response = await client.post(
        f"/api/marketplace/purchases/{purchase_id}/refund", json={"reason": reason}, headers=admin.headers
    )
    assert response.status_code == expect, response.text
    return dict(response.json())


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


# --- what the database holds ------------------------------------------------------------------


async def balances(**where: Any) -> dict[str, int]:
    """Ledger balance per account (non-zero balances only), optionally for one purchase/builder."""
    async with sessionmaker()() as db:
        stmt = select(LedgerEntry.account, func.sum(LedgerEntry.amount_minor)).group_by(LedgerEntry.account)
        for column, value in where.items():
            stmt = stmt.where(getattr(LedgerEntry, column) == value)
        rows = (await db.execute(stmt)).all()
    return {account: int(total) for account, total in rows if total != 0}


async def unbalanced_transactions() -> list[tuple[UUID, str, int]]:
    """Ledger transactions whose entries do not sum to zero per currency (should be none)."""
    async with sessionmaker()() as db:
        stmt = (
            select(LedgerEntry.transaction_id, LedgerEntry.currency, func.sum(LedgerEntry.amount_minor))
            .group_by(LedgerEntry.transaction_id, LedgerEntry.currency)
            .having(func.sum(LedgerEntry.amount_minor) != 0)
        )
        return [(t, c, int(s)) for t, c, s in (await db.execute(stmt)).all()]


async def ledger_transactions(reference: str) -> Counter[str]:
    """How many ledger transactions of each kind carry ``reference`` (``purchase:<id>``)."""
    async with sessionmaker()() as db:
        kinds = (
            await db.execute(select(LedgerTransaction.kind).where(LedgerTransaction.reference == reference))
        ).scalars()
        return Counter(kinds)


async def ledger_entries(purchase_id: str) -> list[tuple[str, str, int]]:
    """(account, leg, amount) of every entry about a purchase, in posting order."""
    async with sessionmaker()() as db:
        stmt = (
            select(LedgerEntry.account, LedgerEntry.leg, LedgerEntry.amount_minor)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerEntry.purchase_id == UUID(purchase_id))
            .order_by(LedgerTransaction.posted_at, LedgerEntry.id)
        )
        return [(a, leg, int(amount)) for a, leg, amount in (await db.execute(stmt)).all()]


async def purchases_of(user_id: UUID) -> list[Purchase]:
    async with sessionmaker()() as db:
        stmt = select(Purchase).where(Purchase.user_id == user_id).order_by(Purchase.created_at)
        return list((await db.execute(stmt)).scalars())


async def payments_of(purchase_id: str) -> list[Payment]:
    async with sessionmaker()() as db:
        stmt = select(Payment).where(Payment.purchase_id == UUID(purchase_id))
        return list((await db.execute(stmt)).scalars())


async def invoices_of(user_id: UUID) -> list[Invoice]:
    async with sessionmaker()() as db:
        stmt = select(Invoice).where(Invoice.user_id == user_id).order_by(Invoice.created_at)
        return list((await db.execute(stmt)).scalars())
