"""Buying through Stripe Checkout: the purchase waits for Stripe's webhook, which the worker applies."""

import time
from collections import Counter

import pytest
import stripe
from sqlalchemy import text

from app.core.db import sessionmaker
from app.models import PaymentStatus
from app.payments.service import payment_service
from app.payments.tasks import process_pending_webhooks
from app.payments.webhooks import PROCESS_WEBHOOK_TASK as TASK
from tests.factories import events_of, signed_in
from tests.fakes import stripe_fee
from tests.marketplace.steps import (
    buy,
    invoices_of,
    ledger_transactions,
    listed_project,
    refund,
    unbalanced_transactions,
)
from tests.payments.steps import (
    deliver,
    job_statuses,
    onboarded_builder,
    only_session,
    payment,
    run_worker,
    webhook_row,
    webhook_rows,
)


async def purchases_of(client, account):
    response = await client.get(f"/api/marketplace/purchases/user/{account.id}", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_buyer_pays_through_stripe_checkout_and_the_webhook_completes_the_purchase(
    client, fake, settings
):
    builder = await onboarded_builder(client, fake, settings)
    buyer = await signed_in(client, "end_user")
    project_id = await listed_project(client, builder, priceMinor=1900)

    purchase = await buy(client, buyer, project_id)

    session = only_session(fake)
    assert purchase["status"] == "pending"
    assert purchase["checkoutUrl"] == session["url"]
    assert session["amount_total"] == 1900
    assert session["metadata"]["payment_id"] == purchase["paymentId"]
    # An abandoned checkout expires within half an hour (and then releases the purchase).
    assert session["expires_at"] - session["created"] <= 30 * 60 + 5

    event = fake.complete_checkout(session["id"])
    assert await deliver(client, fake, event) == {"received": True, "duplicate": False}
    assert await job_statuses(event) == ["todo"]
    assert (await purchases_of(client, buyer))[0]["status"] == "pending"  # until the worker runs

    await run_worker(settings)

    [bought] = await purchases_of(client, buyer)
    assert bought["status"] == "completed"
    assert bought["checkoutUrl"] is None
    charge = fake.charges[fake.payment_intents[session["payment_intent"]]["latest_charge"]]
    stripe_kept = fake.balance_transactions[charge["balance_transaction"]]["fee"]
    assert stripe_kept == stripe_fee(1900)
    paid = await payment(purchase["paymentId"])
    assert paid.status == PaymentStatus.SUCCEEDED
    assert paid.processor_fee_minor == stripe_kept
    assert paid.provider_payment_intent == session["payment_intent"]
    [completed] = await events_of("purchase.completed")
    assert completed["payload"]["processorFeeMinor"] == stripe_kept
    platform_fee = completed["payload"]["platformFeeMinor"]
    assert completed["payload"]["builderShareMinor"] == 1900 - stripe_kept - platform_fee
    assert await ledger_transactions(f"purchase:{purchase['id']}") == Counter({"settlement": 1})
    assert await unbalanced_transactions() == []
    [invoice] = await invoices_of(buyer.id)
    assert invoice.status == "paid"
    row = await webhook_row(event)
    assert row.processed_at is not None
    assert (row.attempts, row.last_error) == (1, None)
    assert await job_statuses(event) == ["succeeded"]


async def paid_checkout(client, fake, settings):
    """A buyer with a pending Stripe purchase they just paid on the Checkout page."""
    builder = await onboarded_builder(client, fake, settings)
    buyer = await signed_in(client, "end_user")
    purchase = await buy(client, buyer, await listed_project(client, builder))
    checkout = fake.complete_checkout(only_session(fake)["id"])
    [intent] = fake.events_of_type("payment_intent.succeeded")
    return buyer, purchase, checkout, intent


async def settled_once(purchase):
    assert await ledger_transactions(f"purchase:{purchase['id']}") == Counter({"settlement": 1})
    assert len(await events_of("purchase.completed")) == 1
    assert len(await events_of("payment.succeeded")) == 1
    assert len(await events_of("invoice.paid")) == 1
    assert await unbalanced_transactions() == []


async def test_redelivered_and_replayed_events_settle_the_purchase_once(client, fake, settings):
    buyer, purchase, checkout, intent = await paid_checkout(client, fake, settings)

    assert (await deliver(client, fake, checkout))["duplicate"] is False
    assert (await deliver(client, fake, checkout))["duplicate"] is True  # Stripe retried
    assert await job_statuses(checkout) == ["todo"]
    await run_worker(settings)
    assert (await deliver(client, fake, checkout))["duplicate"] is True  # replayed after processing
    await deliver(client, fake, intent)  # the other event of the pair
    await deliver(client, fake, fake.events_of_type("charge.succeeded")[0])  # a type we ignore
    await run_worker(settings)

    assert (await purchases_of(client, buyer))[0]["status"] == "completed"
    await settled_once(purchase)
    rows = await webhook_rows()
    assert len(rows) == 4  # onboarding, checkout, intent, charge
    assert all(r.processed_at is not None and r.attempts == 1 for r in rows)


@pytest.mark.parametrize("arrival", ["intent_first", "checkout_first", "together"])
async def test_payment_intent_and_checkout_events_in_any_order_settle_once(client, fake, settings, arrival):
    buyer, purchase, checkout, intent = await paid_checkout(client, fake, settings)
    first, second = (intent, checkout) if arrival == "intent_first" else (checkout, intent)

    await deliver(client, fake, first)
    if arrival == "together":
        await deliver(client, fake, second)
        await run_worker(settings, concurrency=2)  # two jobs at once: the payment row lock serialises them
    else:
        await run_worker(settings)
        assert (await purchases_of(client, buyer))[0]["status"] == "completed"
        await deliver(client, fake, second)
        await run_worker(settings)

    assert (await purchases_of(client, buyer))[0]["status"] == "completed"
    paid = await payment(purchase["paymentId"])
    assert paid.provider_payment_intent == intent["data"]["object"]["id"]
    assert paid.processor_fee_minor == stripe_fee(1900)
    await settled_once(purchase)


async def test_a_declined_card_leaves_checkout_open_and_an_expired_session_fails_the_purchase(
    client, fake, settings
):
    builder = await onboarded_builder(client, fake, settings)
    buyer = await signed_in(client, "end_user")
    purchase = await buy(client, buyer, await listed_project(client, builder))
    session = only_session(fake)

    declined = await declined_attempt(fake, purchase)
    await deliver(client, fake, declined)
    await run_worker(settings)
    # On the Checkout page the buyer may still try another card.
    [pending] = await purchases_of(client, buyer)
    assert pending["status"] == "pending"
    assert pending["checkoutUrl"] == session["url"]

    expired = fake.expire_checkout(session["id"])
    await deliver(client, fake, expired)
    await run_worker(settings)
    await deliver(client, fake, expired)  # redelivered
    await run_worker(settings)

    [failed] = await purchases_of(client, buyer)
    assert failed["status"] == "failed"
    assert failed["checkoutUrl"] is None
    assert (await payment(purchase["paymentId"])).failure_reason == "Checkout session expired"
    assert len(await events_of("purchase.failed")) == 1
    assert await events_of("purchase.completed") == []
    assert await ledger_transactions(f"purchase:{purchase['id']}") == Counter()


async def test_a_second_card_after_a_decline_completes_the_purchase(client, fake, settings):
    builder = await onboarded_builder(client, fake, settings)
    buyer = await signed_in(client, "end_user")
    purchase = await buy(client, buyer, await listed_project(client, builder))

    await deliver(client, fake, await declined_attempt(fake, purchase))
    await deliver(client, fake, fake.complete_checkout(only_session(fake)["id"]))
    await run_worker(settings)

    assert (await purchases_of(client, buyer))[0]["status"] == "completed"
    await settled_once(purchase)


async def test_money_taken_for_a_failed_purchase_is_reported_not_applied(client, fake, settings):
    builder = await onboarded_builder(client, fake, settings)
    buyer = await signed_in(client, "end_user")
    purchase = await buy(client, buyer, await listed_project(client, builder))
    await deliver(client, fake, fake.expire_checkout(only_session(fake)["id"]))
    await run_worker(settings)

    # Stripe reports a success for it anyway (say, a delayed method that cleared late).
    intent = fake.client().v1.payment_intents.create(
        {
            "amount": 1900,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "payment_method_types": ["card"],
            "confirm": True,
            "metadata": {"payment_id": purchase["paymentId"]},
        }
    )
    [succeeded] = [
        e for e in fake.events_of_type("payment_intent.succeeded") if e["data"]["object"]["id"] == intent.id
    ]
    await deliver(client, fake, succeeded)
    await run_worker(settings)

    assert (await purchases_of(client, buyer))[0]["status"] == "failed"
    assert (await payment(purchase["paymentId"])).status == PaymentStatus.FAILED
    [reported] = await events_of("payment.succeeded_after_failure")
    assert reported["payload"]["paymentIntent"] == intent.id
    assert reported["payload"]["amountMinor"] == 1900
    assert await ledger_transactions(f"purchase:{purchase['id']}") == Counter()


async def declined_attempt(fake, purchase):
    """What Stripe sends when the buyer's card is declined on the Checkout page: the attempt's
    payment intent carries the metadata Checkout copied from the session."""
    with pytest.raises(stripe.CardError):
        fake.client().v1.payment_intents.create(
            {
                "amount": 1900,
                "currency": "usd",
                "payment_method": "pm_card_chargeDeclined",
                "payment_method_types": ["card"],
                "confirm": True,
                "metadata": {"payment_id": purchase["paymentId"], "purchase_id": purchase["id"]},
            }
        )
    return fake.events_of_type("payment_intent.payment_failed")[-1]


async def test_a_failed_attempt_is_recorded_and_the_sweeper_applies_it_later(client, fake, settings):
    buyer, purchase, checkout, _ = await paid_checkout(client, fake, settings)
    fake.api_key = "sk_test_rotated"  # Stripe refuses our key for a while: fetching the fee fails
    try:
        await deliver(client, fake, checkout)
        await run_worker(settings)
    finally:
        fake.api_key = "sk_test_fake"

    row = await webhook_row(checkout)
    assert row.processed_at is None
    assert row.attempts == 1
    assert "Invalid API Key" in (row.last_error or "")
    assert (await purchases_of(client, buyer))[0]["status"] == "pending"
    assert await events_of("payment.succeeded") == []

    assert await process_pending_webhooks(timestamp=int(time.time())) == 1

    row = await webhook_row(checkout)
    assert row.processed_at is not None
    assert (row.attempts, row.last_error) == (2, None)
    assert (await purchases_of(client, buyer))[0]["status"] == "completed"
    await settled_once(purchase)


async def test_an_event_whose_job_was_lost_is_applied_by_the_sweeper(client, fake, settings):
    buyer, purchase, checkout, _ = await paid_checkout(client, fake, settings)
    await deliver(client, fake, checkout)
    async with sessionmaker()() as db:
        await db.execute(text("DELETE FROM procrastinate_jobs WHERE task_name = :name"), {"name": TASK})
        await db.commit()

    await run_worker(settings)  # nothing to run
    assert (await purchases_of(client, buyer))[0]["status"] == "pending"
    assert await process_pending_webhooks(timestamp=int(time.time())) == 1
    assert await process_pending_webhooks(timestamp=int(time.time())) == 0

    assert (await purchases_of(client, buyer))[0]["status"] == "completed"
    await settled_once(purchase)


async def test_an_event_contradicting_the_payment_is_rejected_not_applied(client, fake, settings):
    buyer, _, checkout, _ = await paid_checkout(client, fake, settings)
    forged = fake.event(
        "checkout.session.completed", {**checkout["data"]["object"], "amount_total": 100}
    )  # signed with our secret, so only a bug or a dashboard edit could send it

    await deliver(client, fake, forged)
    await run_worker(settings)

    row = await webhook_row(forged)
    assert row.processed_at is not None
    assert "the provider reports 100 usd" in (row.last_error or "")
    assert (await purchases_of(client, buyer))[0]["status"] == "pending"


async def test_refunding_a_stripe_purchase_refunds_once_at_stripe_and_the_webhook_changes_nothing(
    client, fake, settings
):
    _, purchase, checkout, _ = await paid_checkout(client, fake, settings)
    await deliver(client, fake, checkout)
    await run_worker(settings)
    admin = await signed_in(client, "super_admin")

    refunded = await refund(client, admin, purchase["id"])

    assert refunded["status"] == "refunded"
    [made] = fake.refunds.values()
    assert made["amount"] == 1900
    assert made["payment_intent"] == checkout["data"]["object"]["payment_intent"]
    [request] = [r for r in fake.requests if r.path == "/v1/refunds"]
    assert request.idempotency_key == f"refund-{purchase['paymentId']}"
    await deliver(client, fake, fake.events_of_type("charge.refunded")[-1])
    await run_worker(settings)
    assert (await payment(purchase["paymentId"])).status == PaymentStatus.REFUNDED
    assert await ledger_transactions(f"purchase:{purchase['id']}") == Counter({"settlement": 1, "refund": 1})
    assert len(await events_of("purchase.refunded")) == 1
    assert await unbalanced_transactions() == []
    assert all(r.processed_at is not None and r.last_error is None for r in await webhook_rows())


async def test_a_worker_that_does_not_know_what_a_paid_purchase_means_leaves_the_event_for_later(
    client, fake, settings
):
    """The payments domain learns what a paid purchase means from the marketplace's callback; a
    worker process that never imported it must not record the money and strand the purchase."""
    buyer, purchase, checkout, _ = await paid_checkout(client, fake, settings)
    settle = payment_service.on_succeeded.pop("purchase")
    try:
        await deliver(client, fake, checkout)
        await run_worker(settings)
    finally:
        payment_service.on_succeeded["purchase"] = settle

    row = await webhook_row(checkout)
    assert (row.processed_at, row.attempts) == (None, 1)
    assert "no handler for purchase payments" in (row.last_error or "")
    assert (await payment(purchase["paymentId"])).status == PaymentStatus.PENDING

    await process_pending_webhooks(timestamp=int(time.time()))
    assert (await purchases_of(client, buyer))[0]["status"] == "completed"
    await settled_once(purchase)


async def test_a_repeatedly_failing_event_backs_off_and_is_retried_when_due(client, fake, settings):
    buyer, purchase, checkout, _ = await paid_checkout(client, fake, settings)
    fake.api_key = "sk_test_rotated"  # every attempt fails while Stripe refuses our key
    try:
        await deliver(client, fake, checkout)
        await run_worker(settings)  # attempt 1 fails: retried at the next sweep
        await process_pending_webhooks(timestamp=int(time.time()))  # attempt 2 fails: wait a minute
        assert (await webhook_row(checkout)).attempts == 2
        await process_pending_webhooks(timestamp=int(time.time()))  # not due: left alone
    finally:
        fake.api_key = "sk_test_fake"
    row = await webhook_row(checkout)
    assert (row.processed_at, row.attempts) == (None, 2)
    assert row.next_attempt_at is not None
    assert await process_pending_webhooks(timestamp=int(time.time())) == 0  # still not due

    async with sessionmaker()() as db:  # a minute passes
        await db.execute(
            text("UPDATE webhook_events SET next_attempt_at = now() - interval '1 second' WHERE id = :id"),
            {"id": row.id},
        )
        await db.commit()
    assert await process_pending_webhooks(timestamp=int(time.time())) == 1

    row = await webhook_row(checkout)
    assert (row.attempts, row.last_error) == (3, None)
    assert row.processed_at is not None
    assert (await purchases_of(client, buyer))[0]["status"] == "completed"
    await settled_once(purchase)
