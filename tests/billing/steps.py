"""Billing steps through the real API, and what the database says afterwards."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID, uuid4

import httpx
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import func, select

from app.core.config import Settings
from app.core.db import commit, sessionmaker
from app.models import IdempotencyRecord, Invoice, LedgerEntry, LedgerTransaction, Payment
from app.payments.providers import reset_providers
from app.payments.service import payment_service
from tests.conftest import http_client, running_app
from tests.factories import Account
from tests.fakes.stripe_server import FakeStripe, stripe_fee


async def charge(
    client: httpx.AsyncClient,
    admin: Account,
    user_id: UUID,
    *,
    items: list[dict[str, Any]] | None = None,
    currency: str = "usd",
    key: str | None = None,
    expect: int = 201,
    **fields: Any,
) -> dict[str, Any]:
    body = {
        "userId": str(user_id),
        "currency": currency,
        "items": items or [{"description": "Onboarding workshop", "unitAmountMinor": 1500, "quantity": 1}],
        **fields,
    }
    response = await client.post(
        "/api/billing/charge", json=body, headers={**admin.headers, "Idempotency-Key": key or str(uuid4())}
    )
    assert response.status_code == expect, response.text
    return dict(response.json())


async def change_plan(
    client: httpx.AsyncClient, actor: Account, user_id: UUID, plan: str, *, expect: int = 200
) -> dict[str, Any]:
    response = await client.put(
        f"/api/users/{user_id}/subscription", json={"plan": plan}, headers=actor.headers
    )
    assert response.status_code == expect, response.text
    return dict(response.json())


async def invoices() -> list[Invoice]:
    async with sessionmaker()() as db:
        return list((await db.execute(select(Invoice).order_by(Invoice.number))).scalars())


async def payments() -> list[Payment]:
    async with sessionmaker()() as db:
        return list((await db.execute(select(Payment).order_by(Payment.created_at))).scalars())


async def idempotency_records() -> int:
    async with sessionmaker()() as db:
        return int((await db.execute(select(func.count()).select_from(IdempotencyRecord))).scalar_one())


async def ledger_sum() -> int:
    async with sessionmaker()() as db:
        return int(
            (await db.execute(select(func.coalesce(func.sum(LedgerEntry.amount_minor), 0)))).scalar_one()
        )


async def ledger_legs(kind: str, reference: str) -> dict[tuple[str, str], int]:
    async with sessionmaker()() as db:
        rows = await db.execute(
            select(LedgerEntry.account, LedgerEntry.leg, LedgerEntry.amount_minor)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerTransaction.kind == kind, LedgerTransaction.reference == reference)
        )
        return {(account, leg): amount for account, leg, amount in rows}


async def settle_on_stripe(invoice_id: str | UUID, *, succeeded: bool = True) -> Payment:
    """What the Stripe webhook processing does once the customer paid (or the payment failed):
    ``payment_service.mark_succeeded`` / ``mark_failed`` on the invoice's pending payment."""
    async with sessionmaker()() as db:
        payment = await payment_service.for_invoice(db, UUID(str(invoice_id)))
        assert payment is not None
        if succeeded:
            await payment_service.mark_succeeded(
                db, payment, processor_fee_minor=stripe_fee(payment.amount_minor), payment_intent="pi_test"
            )
        else:
            await payment_service.mark_failed(db, payment, reason="Your card was declined.")
        await commit(db)
    return payment


@asynccontextmanager
async def stripe_app(
    settings: Settings,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, FakeStripe, Settings]]:
    """The app on the Stripe provider, talking to a local fake Stripe (and its settings)."""
    async with FakeStripe() as fake:
        reset_providers()
        stripe_settings = settings.model_copy(
            update={
                "payment_provider": "stripe",
                "stripe_api_key": SecretStr(fake.api_key),
                "stripe_api_base": fake.base_url,
                "stripe_webhook_secret": SecretStr(fake.webhook_secret),
            }
        )
        try:
            async with running_app(stripe_settings) as app, http_client(app) as client:
                yield app, client, fake, stripe_settings
        finally:
            reset_providers()
