"""Distribution through Stripe Connect transfers, against the local fake Stripe: a refused
transfer fails only its builder's payout, restores their balance, and the next run retries it."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select, update

from app.core.db import commit, sessionmaker
from app.models import Payment, Payout, PayoutAccount
from app.payments.providers import reset_providers
from app.payments.service import payment_service
from app.revenue import ledger
from tests.factories import Account, events_of, signed_in
from tests.fakes import FakeStripe, stripe_fee
from tests.revenue.journey import distribute, published_project
from tests.revenue.test_distribute_local import account_balance, assert_ledger_clean, payouts

PRICE = 1900
SHARE = PRICE - stripe_fee(PRICE) - PRICE * 2000 // 10_000


@pytest.fixture
async def fake() -> AsyncIterator[FakeStripe]:
    async with FakeStripe() as server:
        yield server


@pytest.fixture
def settings_changes(fake: FakeStripe) -> dict[str, Any]:
    return {
        "payment_provider": "stripe",
        "stripe_api_key": "sk_test_fake",
        "stripe_api_base": fake.base_url,
        "stripe_webhook_secret": "whsec_fake",
        "payout_settlement_delay_days": 0,
    }


@pytest.fixture(autouse=True)
def _fresh_providers() -> Iterator[None]:
    reset_providers()
    yield
    reset_providers()


async def onboarded_builder(client: Any, fake: FakeStripe) -> tuple[Account, str]:
    """A builder whose Express account finished onboarding at Stripe, recorded on our side."""
    builder = await signed_in(client, "builder")
    account = await asyncio.to_thread(
        fake.client().v1.accounts.create,
        {"type": "express", "email": builder.email, "capabilities": {"transfers": {"requested": True}}},
    )
    fake.complete_onboarding(account.id)
    async with sessionmaker()() as db:
        db.add(
            PayoutAccount(
                user_id=builder.id,
                provider="stripe",
                provider_account_id=account.id,
                details_submitted=True,
                payouts_enabled=True,
                status="enabled",
            )
        )
        await commit(db)
    return builder, account.id


async def paid_sale(client: Any, fake: FakeStripe, project_id: UUID) -> None:
    """A buyer checks out and pays; what the webhook would record is recorded."""
    buyer = await signed_in(client, "end_user")
    response = await client.post(
        "/api/marketplace/purchase",
        json={"projectId": str(project_id)},
        headers={**buyer.headers, "Idempotency-Key": f"buy-{project_id}-{buyer.id}"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "pending"
    async with sessionmaker()() as db:
        payment = (
            await db.execute(select(Payment).where(Payment.id == response.json()["paymentId"]))
        ).scalar_one()
        event = fake.complete_checkout(payment.provider_ref or "")
        await payment_service.mark_succeeded(
            db,
            payment,
            processor_fee_minor=stripe_fee(PRICE),
            payment_intent=event["data"]["object"]["payment_intent"],
        )
        await commit(db)


async def test_a_refused_transfer_fails_one_payout_and_the_next_run_pays_it(client, fake):
    admin = await signed_in(client, "super_admin")
    refused, refused_account = await onboarded_builder(client, fake)
    paid, paid_account = await onboarded_builder(client, fake)
    restricted, _ = await onboarded_builder(client, fake)
    for builder in (refused, paid, restricted):
        await paid_sale(client, fake, await published_project(client, builder, price=PRICE))
    async with sessionmaker()() as db:
        await db.execute(
            update(PayoutAccount).where(PayoutAccount.user_id == restricted.id).values(payouts_enabled=False)
        )
        await commit(db)
    fake.fail_transfers_to(refused_account)

    response = await distribute(client, admin)

    assert response.status_code == 200, response.text
    body = response.json()
    by_builder = {p["builderId"]: p for p in body["payouts"]}
    assert set(by_builder) == {str(refused.id), str(paid.id)}
    failed, sent = by_builder[str(refused.id)], by_builder[str(paid.id)]
    assert failed["status"] == "failed"
    assert "insufficient available funds" in failed["failureReason"]
    assert failed["providerTransferId"] is None
    assert sent["status"] == "paid"
    transfer = fake.transfers[sent["providerTransferId"]]
    assert (transfer["amount"], transfer["currency"], transfer["destination"]) == (SHARE, "usd", paid_account)
    assert transfer["transfer_group"] == f"payout-{sent['id']}"
    transfer_request = next(r for r in fake.requests if r.path == "/v1/transfers" and r.status == 200)
    assert transfer_request.idempotency_key == f"payout-{sent['id']}"
    assert body["skipped"] == [
        {
            "builderId": str(restricted.id),
            "currency": "usd",
            "availableMinor": SHARE,
            "reason": "payouts_not_enabled",
        }
    ]
    assert body["totals"] == [
        {"currency": "usd", "payouts": 2, "paidMinor": SHARE, "failedMinor": SHARE, "pendingMinor": 0}
    ]
    # The refused builder's balance is whole again; nothing is stuck in transit.
    assert await account_balance(ledger.builder_payable(refused.id)) == -SHARE
    assert await account_balance(ledger.builder_payable(paid.id)) == 0
    assert await account_balance(ledger.IN_TRANSIT) == 0
    await assert_ledger_clean()
    [failure] = await events_of("payout.failed")
    assert failure["subject_id"] == failed["id"]
    assert "insufficient available funds" in failure["payload"]["reason"]

    retry = await distribute(client, admin)

    [again] = retry.json()["payouts"]
    assert again["builderId"] == str(refused.id)
    assert again["status"] == "paid"
    assert again["id"] != failed["id"]
    assert fake.transfers[again["providerTransferId"]]["destination"] == refused_account
    assert await account_balance(ledger.builder_payable(refused.id)) == 0
    assert sorted(p.status for p in await payouts()) == ["failed", "paid", "paid"]
    await assert_ledger_clean()


async def test_a_lost_transfer_answer_keeps_the_payout_in_transit_and_it_is_sent_once(client, fake):
    admin = await signed_in(client, "super_admin")
    builder, account = await onboarded_builder(client, fake)
    await paid_sale(client, fake, await published_project(client, builder, price=PRICE))
    fake.fail_transfers_to(account, status=500, code="api_error", message="Something went wrong")

    first = await distribute(client, admin)

    [pending] = first.json()["payouts"]
    assert pending["status"] == "pending"
    assert first.json()["totals"][0]["pendingMinor"] == SHARE
    assert await account_balance(ledger.IN_TRANSIT) == -SHARE
    await assert_ledger_clean()

    # Stripe keeps the answer under the idempotency key: the next run asks again with the same
    # key and gets the same 500, so nothing can be sent twice.
    second = await distribute(client, admin)
    assert [(p["id"], p["status"]) for p in second.json()["payouts"]] == [(pending["id"], "pending")]
    # Once Stripe has forgotten the answer (keys expire after 24 hours), the retry goes through.
    fake._idempotency.clear()

    third = await distribute(client, admin)

    [paid] = third.json()["payouts"]
    assert (paid["id"], paid["status"]) == (pending["id"], "paid")
    assert [t["destination"] for t in fake.transfers.values()] == [account]
    assert await account_balance(ledger.IN_TRANSIT) == 0
    assert await account_balance(ledger.builder_payable(builder.id)) == 0
    assert len(await payouts()) == 1
    await assert_ledger_clean()


async def test_a_builder_without_a_payout_account_is_skipped(client, fake):
    admin = await signed_in(client, "super_admin")
    builder, _ = await onboarded_builder(client, fake)
    await paid_sale(client, fake, await published_project(client, builder, price=PRICE))
    async with sessionmaker()() as db:
        account = (
            await db.execute(select(PayoutAccount).where(PayoutAccount.user_id == builder.id))
        ).scalar_one()
        await db.delete(account)
        await commit(db)

    response = await distribute(client, admin)

    assert response.json()["payouts"] == []
    assert response.json()["skipped"][0]["reason"] == "no_payout_account"
    assert fake.transfers == {}
    async with sessionmaker()() as db:
        assert (await db.execute(select(Payout))).first() is None
