"""The purchase journey end to end, on both payment providers.

Builder publishes, an admin approves, an end user buys (Stripe: pays on Checkout and the signed
webhook settles it in the real worker), the ledger balances, the builder sees the revenue, a
distribution pays it out, the buyer has a paid invoice, and a refund reverses the sale.
"""

from collections.abc import Iterator
from typing import Any

import pytest

from app.core.db import sessionmaker
from app.payments.providers import reset_providers
from app.revenue.service import check_ledger
from tests.factories import Account, create_project, events_of, signed_in
from tests.fakes import FakeStripe
from tests.payments.steps import deliver, run_worker

PRICE = 1900


@pytest.fixture(scope="module")
def stripe_server() -> Iterator[FakeStripe]:
    with FakeStripe() as fake:
        yield fake


@pytest.fixture(params=["local", "stripe"])
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings_changes(provider: str, stripe_server: FakeStripe) -> dict[str, Any]:
    stripe_server.reset()
    reset_providers()
    journey = {
        "listing_review_required": True,
        "payout_settlement_delay_days": 0,
        "payout_minimum_minor": 100,
    }
    if provider == "local":
        return journey
    return {
        **journey,
        "payment_provider": "stripe",
        "stripe_api_key": stripe_server.api_key,
        "stripe_webhook_secret": stripe_server.webhook_secret,
        "stripe_api_base": stripe_server.base_url,
    }


async def ledger_is_clean() -> None:
    async with sessionmaker()() as db:
        failed = [r for r in await check_ledger(db) if not r.ok]
    assert failed == []


async def buy(
    client, settings, provider: str, fake: FakeStripe, buyer: Account, project_id, key: str
) -> dict:
    response = await client.post(
        "/api/marketplace/purchase",
        json={"projectId": str(project_id)},
        headers={**buyer.headers, "Idempotency-Key": key},
    )
    assert response.status_code == 201, response.text
    purchase = response.json()
    if provider == "stripe":
        assert purchase["status"] == "pending"
        assert purchase["checkoutUrl"]
        session = next(
            s for s in fake.checkout_sessions.values() if s["amount_total"] == PRICE and s["status"] == "open"
        )
        await deliver(client, fake, fake.complete_checkout(session["id"]))
        await run_worker(settings)
    mine = await client.get(f"/api/marketplace/purchases/user/{buyer.id}", headers=buyer.headers)
    return next(p for p in mine.json()["items"] if p["id"] == purchase["id"])


async def test_publish_approve_buy_settle_pay_out_invoice_and_refund(
    client, settings, provider, stripe_server
):
    fake = stripe_server
    admin = await signed_in(client, "super_admin")
    builder = await signed_in(client, "builder")
    buyer = await signed_in(client, "end_user")
    second_buyer = await signed_in(client, "end_user")
    if provider == "stripe":
        account = await client.post("/api/payments/payout-account", headers=builder.headers)
        assert account.status_code == 201, account.text
        await deliver(client, fake, fake.complete_onboarding(account.json()["accountId"]))
        await run_worker(settings)

    # The builder publishes a ready project; it waits for review until an admin approves it.
    project_id = await create_project(builder, name="Support Copilot")
    for status in ("in_development", "ready"):
        await client.put(
            f"/api/projects/{project_id}/status", json={"status": status}, headers=builder.headers
        )
    published = await client.post(
        f"/api/marketplace/projects/{project_id}/publish",
        json={
            "priceMinor": PRICE,
            "currency": "usd",
            "description": "Answers",
            "category": "customer-support",
        },
        headers=builder.headers,
    )
    assert published.status_code == 201, published.text
    assert published.json()["status"] == "pending_review"
    approved = await client.put(
        f"/api/marketplace/projects/{project_id}/status",
        json={"status": "active", "reason": "Reviewed: works as described"},
        headers=admin.headers,
    )
    assert approved.json()["status"] == "active"

    # The end user buys; the sale settles (at once locally, on the webhook with Stripe).
    purchase = await buy(client, settings, provider, fake, buyer, project_id, "journey-1")
    assert purchase["status"] == "completed"
    completed = [e["payload"] for e in await events_of("purchase.completed")]
    assert len(completed) == 1
    sale = completed[0]
    assert sale["grossMinor"] == PRICE
    assert sale["processorFeeMinor"] + sale["platformFeeMinor"] + sale["builderShareMinor"] == PRICE
    assert sale["processorFeeMinor"] == 85  # 2.9% + 30, which both providers charge here
    await ledger_is_clean()

    # The builder sees the revenue; a distribution pays it out.
    revenue = await client.get(f"/api/revenue/user/{builder.id}", headers=builder.headers)
    totals = revenue.json()["totals"][0]
    assert totals["earnedMinor"] == sale["builderShareMinor"]
    assert totals["availableMinor"] == sale["builderShareMinor"]
    distributed = await client.post(
        "/api/revenue/distribute", json={}, headers={**admin.headers, "Idempotency-Key": "journey-payouts"}
    )
    assert distributed.status_code == 200, distributed.text
    [payout] = distributed.json()["payouts"]
    assert (payout["status"], payout["amountMinor"]) == ("paid", sale["builderShareMinor"])
    if provider == "stripe":
        [transfer] = fake.transfers.values()
        assert transfer["amount"] == sale["builderShareMinor"]
        assert transfer["destination"] == account.json()["accountId"]
    after = (await client.get(f"/api/revenue/user/{builder.id}", headers=builder.headers)).json()["totals"][0]
    assert (after["paidOutMinor"], after["availableMinor"]) == (sale["builderShareMinor"], 0)

    # The buyer has a paid invoice for the price, readable as a document.
    invoices = (await client.get("/api/billing/invoices", headers=buyer.headers)).json()["items"]
    assert [(i["status"], i["totalMinor"]) for i in invoices] == [("paid", PRICE)]
    document = await client.get(f"/api/billing/invoices/{invoices[0]['id']}/html", headers=buyer.headers)
    assert invoices[0]["number"] in document.text
    assert "$19.00" in document.text

    # Another sale, refunded by an admin: the ledger is reversed and access revoked.
    other = await buy(client, settings, provider, fake, second_buyer, project_id, "journey-2")
    refunded = await client.post(
        f"/api/marketplace/purchases/{other['id']}/refund",
        json={"reason": "Customer asked"},
        headers=admin.headers,
    )
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["status"] == "refunded"
    if provider == "stripe":
        assert len(fake.refunds) == 1
    final = (await client.get(f"/api/revenue/user/{builder.id}", headers=builder.headers)).json()["totals"][0]
    assert final["balanceMinor"] == 0  # the first sale paid out, the second taken back
    listing = await client.get(f"/api/marketplace/projects/{project_id}")
    assert listing.json()["purchaseCount"] == 1
    await ledger_is_clean()
