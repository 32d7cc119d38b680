"""Paid plans: a user buys one through the provider; administrators still assign any plan."""

import pytest

from tests.billing.steps import (
    change_plan,
    invoices,
    ledger_legs,
    ledger_sum,
    payments,
    settle_on_stripe,
    stripe_app,
)
from tests.factories import events_of, signed_in
from tests.fakes.stripe_server import stripe_fee
from tests.payments.steps import deliver, run_worker

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


async def test_self_service_upgrade_on_the_local_provider_pays_and_switches_the_plan(client):
    builder = await signed_in(client, "builder")

    answer = await change_plan(client, builder, builder.id, "pro")

    assert (answer["plan"], answer["status"], answer["endDate"]) == ("pro", "active", None)
    assert answer["limits"]["maxProjects"] == 25
    assert answer["checkoutUrl"] is None
    assert answer["pendingPlan"] is None
    profile = (await client.get(f"/api/users/{builder.id}", headers=builder.headers)).json()
    assert profile["plan"] == "pro"

    [invoice] = await invoices()
    assert str(invoice.id) == answer["invoiceId"]
    assert (invoice.kind, invoice.reference, invoice.status, invoice.user_id) == (
        "plan",
        "pro",
        "paid",
        builder.id,
    )
    assert (invoice.currency, invoice.subtotal_minor, invoice.total_minor) == ("usd", 2900, 2900)
    fee = 84 + 30  # local provider: 2.9% of 29.00 = 0.841 -> 0.84, + 0.30
    assert await ledger_legs("plan", f"invoice:{invoice.id}") == {
        ("platform:cash", "gross"): 2900,
        ("platform:billing_revenue", "billing_revenue"): -2900,
        ("platform:cash", "processor_fee"): -fee,
        ("platform:fee_expense", "processor_fee"): fee,
    }
    assert await ledger_sum() == 0
    [changed] = await events_of("user.subscription_changed")
    assert changed["actor_id"] == builder.id
    assert changed["payload"] == {
        "from": "free", "to": "pro", "priceMinor": 2900, "currency": "usd", "invoiceId": str(invoice.id),
    }  # fmt: skip
    assert [e["type"] for e in await events_of("invoice.")] == ["invoice.issued", "invoice.paid"]

    # Asking for the plan one already has changes and charges nothing.
    again = await change_plan(client, builder, builder.id, "pro")
    assert again["id"] == answer["id"]
    assert again["invoiceId"] is None
    assert len(await invoices()) == 1


@pytest.mark.parametrize("settings_changes", [{"invoice_tax_rate_bps": 2000}])
async def test_plan_tax_is_added_to_the_plan_price(client):
    user = await signed_in(client, "end_user")

    await change_plan(client, user, user.id, "business")

    [invoice] = await invoices()
    business_price = invoice.subtotal_minor
    assert invoice.tax_minor == (business_price * 2000 + 5000) // 10000
    assert (await payments())[0].amount_minor == invoice.total_minor == business_price + invoice.tax_minor
    assert await ledger_sum() == 0


async def test_admins_assign_paid_plans_without_payment_and_users_go_back_to_free(client):
    admin = await signed_in(client, "super_admin")
    builder = await signed_in(client, "builder")

    assigned = await change_plan(client, admin, builder.id, "business")
    downgraded = await change_plan(client, builder, builder.id, "free")

    assert (assigned["plan"], assigned["status"], assigned["invoiceId"]) == ("business", "active", None)
    assert (downgraded["plan"], downgraded["status"]) == ("free", "active")
    assert await invoices() == []
    assert await payments() == []


async def test_users_cannot_buy_a_plan_for_someone_else(client):
    buyer = await signed_in(client, "builder")
    other = await signed_in(client, "builder")

    response = await client.put(
        f"/api/users/{other.id}/subscription", json={"plan": "pro"}, headers=buyer.headers
    )

    assert response.status_code == 404
    assert await invoices() == []


async def test_upgrade_on_stripe_waits_for_payment_then_switches_the_plan(settings):
    async with stripe_app(settings) as (_, client, fake, _settings):
        builder = await signed_in(client, "builder")

        pending = await change_plan(client, builder, builder.id, "pro")

        assert (pending["status"], pending["plan"], pending["pendingPlan"]) == (
            "pending_payment",
            "free",
            "pro",
        )
        assert pending["limits"]["maxProjects"] == 3  # the free plan stays until paid
        assert pending["checkoutUrl"].startswith("https://checkout.stripe.com/")
        [session] = fake.checkout_sessions.values()
        assert session["amount_total"] == 2900
        assert session["metadata"]["invoice_id"] == pending["invoiceId"]
        profile = (await client.get(f"/api/users/{builder.id}", headers=builder.headers)).json()
        assert profile["plan"] == "free"
        invoice = (
            await client.get(f"/api/billing/invoices/{pending['invoiceId']}", headers=builder.headers)
        ).json()
        assert (invoice["status"], invoice["kind"]) == ("open", "plan")
        assert invoice["payment"]["checkoutUrl"] == pending["checkoutUrl"]

        # Clicking "upgrade" again returns the same checkout, not a second invoice or payment.
        again = await change_plan(client, builder, builder.id, "pro")
        assert (again["invoiceId"], again["checkoutUrl"]) == (pending["invoiceId"], pending["checkoutUrl"])
        assert len(await invoices()) == 1
        assert len(await payments()) == 1

        await settle_on_stripe(pending["invoiceId"])

        profile = (await client.get(f"/api/users/{builder.id}", headers=builder.headers)).json()
        assert profile["plan"] == "pro"
        paid = (
            await client.get(f"/api/billing/invoices/{pending['invoiceId']}", headers=builder.headers)
        ).json()
        assert paid["status"] == "paid"
        [changed] = await events_of("user.subscription_changed")
        assert changed["payload"]["invoiceId"] == pending["invoiceId"]
        assert await ledger_sum() == 0
        now_pro = await change_plan(client, builder, builder.id, "pro")
        assert (now_pro["plan"], now_pro["status"]) == ("pro", "active")


async def test_after_a_failed_plan_payment_the_user_can_pay_the_same_invoice_again(settings):
    async with stripe_app(settings) as (_, client, _fake, _settings):
        user = await signed_in(client, "end_user")
        first = await change_plan(client, user, user.id, "pro")
        await settle_on_stripe(first["invoiceId"], succeeded=False)
        assert [e["type"] for e in await events_of("invoice.payment_failed")] == ["invoice.payment_failed"]

        retry = await change_plan(client, user, user.id, "pro")

        assert retry["invoiceId"] == first["invoiceId"]
        assert retry["checkoutUrl"] != first["checkoutUrl"]
        assert [p.status for p in await payments()] == ["failed", "pending"]
        await settle_on_stripe(retry["invoiceId"])
        profile = (await client.get(f"/api/users/{user.id}", headers=user.headers)).json()
        assert profile["plan"] == "pro"
        assert len(await invoices()) == 1


async def test_upgrade_on_stripe_completes_through_the_real_webhook_and_worker(settings):
    async with stripe_app(settings) as (_, client, fake, stripe_settings):
        user = await signed_in(client, "end_user")
        pending = await change_plan(client, user, user.id, "pro")
        [session] = fake.checkout_sessions.values()

        await deliver(client, fake, fake.complete_checkout(session["id"]))
        await run_worker(stripe_settings)

        profile = (await client.get(f"/api/users/{user.id}", headers=user.headers)).json()
        assert profile["plan"] == "pro"
        invoice = (
            await client.get(f"/api/billing/invoices/{pending['invoiceId']}", headers=user.headers)
        ).json()
        assert invoice["status"] == "paid"
        assert invoice["payment"]["status"] == "succeeded"
        fee = (await payments())[0].processor_fee_minor
        assert fee == stripe_fee(invoice["totalMinor"])
        legs = await ledger_legs("plan", f"invoice:{pending['invoiceId']}")
        assert legs[("platform:fee_expense", "processor_fee")] == fee
        assert await ledger_sum() == 0
