"""Admin charges: idempotent, tax added on top, paid through the provider, posted to the ledger."""

import asyncio

import pytest
from sqlalchemy import select

from app.billing.service import LineItem, billing_service, tax_on
from app.core.db import commit, sessionmaker
from app.models import Invoice
from tests.billing.steps import (
    charge,
    idempotency_records,
    invoices,
    ledger_legs,
    ledger_sum,
    payments,
    settle_on_stripe,
    stripe_app,
)
from tests.factories import create_user, events_of, signed_in

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

ITEMS = [{"description": "Onboarding workshop", "unitAmountMinor": 15000, "quantity": 2}]


async def test_the_same_idempotency_key_twice_charges_once_and_answers_the_same(client):
    admin = await signed_in(client, "super_admin")
    customer = await create_user("end_user")

    first = await charge(client, admin, customer.id, items=ITEMS, key="charge-1")
    again = await charge(client, admin, customer.id, items=ITEMS, key="charge-1", expect=200)

    assert again == first
    assert len(await invoices()) == 1
    assert len(await payments()) == 1
    assert await idempotency_records() == 1
    assert [e["type"] for e in await events_of("invoice.")] == ["invoice.issued", "invoice.paid"]


async def test_concurrent_retries_with_one_key_charge_once(client):
    admin = await signed_in(client, "super_admin")
    customer = await create_user("end_user")
    body = {"userId": str(customer.id), "currency": "usd", "items": ITEMS}
    headers = {**admin.headers, "Idempotency-Key": "same"}

    responses = await asyncio.gather(
        *(client.post("/api/billing/charge", json=body, headers=headers) for _ in range(5))
    )

    assert sorted(r.status_code for r in responses) == [200, 200, 200, 200, 201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(await invoices()) == 1
    assert len(await payments()) == 1


async def test_a_key_reused_for_another_charge_is_409_and_charges_nothing(client):
    admin = await signed_in(client, "super_admin")
    customer = await create_user("end_user")
    await charge(client, admin, customer.id, items=ITEMS, key="k")

    other = await charge(
        client, admin, customer.id, key="k", expect=409, items=[{"description": "Else", "unitAmountMinor": 1}]
    )

    assert other["error"]["code"] == "idempotency_key_reused"
    assert len(await invoices()) == 1


async def test_keys_are_per_administrator(client):
    first_admin = await signed_in(client, "super_admin")
    second_admin = await signed_in(client, "super_admin")
    customer = await create_user("end_user")

    a = await charge(client, first_admin, customer.id, items=ITEMS, key="shared")
    b = await charge(client, second_admin, customer.id, items=ITEMS, key="shared")

    assert a["id"] != b["id"]


async def test_a_charge_without_an_idempotency_key_is_refused(client):
    admin = await signed_in(client, "super_admin")
    customer = await create_user("end_user")
    body = {"userId": str(customer.id), "currency": "usd", "items": ITEMS}

    response = await client.post("/api/billing/charge", json=body, headers=admin.headers)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_required"
    assert await invoices() == []


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"currency": "dollars"}, 422, None),
        ({"items": []}, 422, None),
        ({"items": [{"description": "x", "unitAmountMinor": -5}]}, 422, None),
        ({"items": [{"description": "x", "unitAmountMinor": 5, "quantity": 0}]}, 422, None),
        ({"items": [{"description": "", "unitAmountMinor": 5}]}, 422, None),
        ({"items": [{"description": "free", "unitAmountMinor": 0}]}, 422, "charge_amount_zero"),
        ({"amountMinor": 5}, 422, None),
        ({"userId": "00000000-0000-7000-8000-000000000000"}, 404, "user_not_found"),
    ],
)
async def test_bad_charges_are_refused_and_issue_nothing(client, change, status, code):
    admin = await signed_in(client, "super_admin")
    customer = await create_user("end_user")
    body = {"userId": str(customer.id), "currency": "usd", "items": ITEMS, **change}

    response = await client.post(
        "/api/billing/charge", json=body, headers={**admin.headers, "Idempotency-Key": "x"}
    )

    assert response.status_code == status, response.text
    if code:
        assert response.json()["error"]["code"] == code
    assert await invoices() == []
    assert await idempotency_records() == 0


async def test_a_charge_on_the_local_provider_is_paid_and_posted_as_billing_revenue(client):
    admin = await signed_in(client, "super_admin")
    customer = await create_user("end_user")

    made = await charge(client, admin, customer.id, items=ITEMS, memo="Thanks")

    assert (made["kind"], made["status"], made["reference"], made["memo"]) == (
        "charge",
        "paid",
        None,
        "Thanks",
    )
    assert (made["subtotalMinor"], made["taxMinor"], made["totalMinor"]) == (30000, 0, 30000)
    assert made["payment"]["status"] == "succeeded"
    fee = 870 + 30  # local provider: 2.9% of 300.00 + 0.30
    assert await ledger_legs("charge", f"invoice:{made['id']}") == {
        ("platform:cash", "gross"): 30000,
        ("platform:billing_revenue", "billing_revenue"): -30000,
        ("platform:cash", "processor_fee"): -fee,
        ("platform:fee_expense", "processor_fee"): fee,
    }
    assert await ledger_sum() == 0
    types = [e["type"] for e in await events_of()]
    assert types.index("invoice.issued") < types.index("payment.succeeded") < types.index("invoice.paid")
    issued = (await events_of("invoice.issued"))[0]
    assert issued["actor_id"] == admin.id
    assert issued["payload"]["kind"] == "charge"


# Tax


def test_tax_is_rounded_half_up_to_the_minor_unit():
    assert tax_on(1000, 2000) == 200
    assert tax_on(5, 1000) == 1  # 0.5 -> 1
    assert tax_on(4, 1000) == 0  # 0.4 -> 0
    assert tax_on(200, 2025) == 41  # 40.5 -> 41 (half up, not half even)
    assert tax_on(199, 2025) == 40  # 40.2975 -> 40
    assert tax_on(1999, 2000) == 400  # 399.8 -> 400
    assert tax_on(0, 2000) == 0
    assert tax_on(12345, 0) == 0


@pytest.mark.parametrize("settings_changes", [{"invoice_tax_rate_bps": 2025}])
async def test_charge_tax_is_added_on_top_and_rounded_half_up(client):
    admin = await signed_in(client, "super_admin")
    customer = await create_user("end_user")

    made = await charge(
        client, admin, customer.id, items=[{"description": "Two", "unitAmountMinor": 100, "quantity": 2}]
    )

    assert (made["subtotalMinor"], made["taxRateBps"], made["taxMinor"], made["totalMinor"]) == (
        200,
        2025,
        41,
        241,
    )
    assert made["taxIncluded"] is False
    assert (await payments())[0].amount_minor == 241
    assert (await ledger_legs("charge", f"invoice:{made['id']}"))[("platform:cash", "gross")] == 241


@pytest.mark.parametrize(
    ("price", "rate", "subtotal", "tax"),
    [(1900, 2000, 1583, 317), (1000, 2000, 833, 167), (1, 2000, 1, 0), (999, 700, 934, 65), (500, 0, 500, 0)],
)
async def test_tax_included_prices_keep_the_total_equal_to_the_price(
    client, settings, price, rate, subtotal, tax
):
    customer = await create_user("end_user")
    taxed = settings.model_copy(update={"invoice_tax_rate_bps": rate})
    async with sessionmaker()() as db:
        invoice = await billing_service.issue(
            db, taxed, user_id=customer.id, kind="purchase", reference="p", currency="usd",
            lines=[LineItem("App", price)], actor_id=customer.id, tax_included=True,
        )  # fmt: skip
        await commit(db)

    assert (invoice.subtotal_minor, invoice.tax_minor, invoice.total_minor) == (subtotal, tax, price)


@pytest.mark.parametrize("settings_changes", [{"invoice_tax_rate_bps": 2000}])
async def test_a_marketplace_purchase_invoice_includes_the_tax_in_the_price(client):
    builder = await signed_in(client, "builder")
    buyer = await signed_in(client, "end_user")
    from tests.factories import create_project

    project_id = await create_project(builder, name="Support Copilot")
    for status in ("in_development", "ready"):
        await client.put(
            f"/api/projects/{project_id}/status", json={"status": status}, headers=builder.headers
        )
    published = await client.post(
        f"/api/marketplace/projects/{project_id}/publish",
        json={"priceMinor": 1900, "currency": "usd", "description": "Helps", "category": "customer-support"},
        headers=builder.headers,
    )
    assert published.status_code == 201, published.text
    bought = await client.post(
        "/api/marketplace/purchase",
        json={"projectId": str(project_id)},
        headers={**buyer.headers, "Idempotency-Key": "buy"},
    )
    assert bought.status_code == 201, bought.text

    listed = (await client.get("/api/billing/invoices", headers=buyer.headers)).json()["items"]
    assert len(listed) == 1
    invoice = listed[0]
    assert (invoice["kind"], invoice["status"], invoice["reference"]) == (
        "purchase",
        "paid",
        bought.json()["id"],
    )
    assert (invoice["subtotalMinor"], invoice["taxMinor"], invoice["totalMinor"]) == (1583, 317, 1900)
    assert invoice["taxIncluded"] is True
    assert invoice["items"][0]["amountMinor"] == 1900
    page = (await client.get(f"/api/billing/invoices/{invoice['id']}/html", headers=buyer.headers)).text
    assert "Tax (20%, included)" in page
    assert "Prices include tax." in page
    assert "$19.00" in page


# Stripe: the invoice waits for the payment


async def test_a_charge_on_stripe_stays_open_until_paid_then_is_posted_once(settings):
    async with stripe_app(settings) as (_, client, fake, _settings):
        admin = await signed_in(client, "super_admin")
        customer = await create_user("end_user")

        made = await charge(client, admin, customer.id, items=ITEMS)
        assert made["status"] == "open"
        assert made["paidAt"] is None
        assert made["payment"]["status"] == "pending"
        session_url = made["payment"]["checkoutUrl"]
        session = next(iter(fake.checkout_sessions.values()))
        assert session["url"] == session_url
        assert session["amount_total"] == 30000
        assert session["metadata"]["invoice_id"] == made["id"]
        assert await ledger_legs("charge", f"invoice:{made['id']}") == {}

        payment = await settle_on_stripe(made["id"])
        async with sessionmaker()() as db:
            # A duplicate webhook finds the payment no longer pending: nothing happens twice.
            from app.payments.service import payment_service

            stored = await payment_service.get(db, payment.id)
            assert stored is not None
            assert not await payment_service.mark_succeeded(db, stored, processor_fee_minor=0)

        paid = (await client.get(f"/api/billing/invoices/{made['id']}", headers=admin.headers)).json()
        assert paid["status"] == "paid"
        assert paid["paidAt"]
        assert paid["payment"] == {**made["payment"], "status": "succeeded", "checkoutUrl": None}
        legs = await ledger_legs("charge", f"invoice:{made['id']}")
        assert legs[("platform:cash", "gross")] == 30000
        assert legs[("platform:cash", "processor_fee")] == -(870 + 30)
        assert await ledger_sum() == 0


async def test_a_failed_stripe_payment_leaves_the_invoice_open_and_is_recorded(settings):
    async with stripe_app(settings) as (_, client, _fake, _settings):
        admin = await signed_in(client, "super_admin")
        customer = await create_user("end_user")
        made = await charge(client, admin, customer.id, items=ITEMS)

        payment = await settle_on_stripe(made["id"], succeeded=False)

        detail = (await client.get(f"/api/billing/invoices/{made['id']}", headers=admin.headers)).json()
        assert detail["status"] == "open"
        assert detail["payment"]["status"] == "failed"
        failed = await events_of("invoice.payment_failed")
        assert len(failed) == 1
        assert failed[0]["subject_id"] == made["id"]
        assert failed[0]["payload"]["paymentId"] == str(payment.id)
        assert failed[0]["payload"]["reason"] == "Your card was declined."
        assert failed[0]["payload"]["status"] == "open"
        assert await ledger_sum() == 0
        async with sessionmaker()() as db:
            status = (await db.execute(select(Invoice.status))).scalar_one()
        assert status == "open"


@pytest.mark.parametrize("settings_changes", [{"invoice_tax_rate_bps": 2000}], ids=["vat_20"])
async def test_tax_collected_on_a_charge_is_owed_not_revenue(client):
    admin = await signed_in(client, "super_admin")
    customer = await create_user("end_user")

    made = await charge(client, admin, customer.id, items=ITEMS)

    assert (made["subtotalMinor"], made["taxMinor"], made["totalMinor"]) == (30000, 6000, 36000)
    fee = (36000 * 290 + 5000) // 10000 + 30
    assert await ledger_legs("charge", f"invoice:{made['id']}") == {
        ("platform:cash", "gross"): 36000,
        ("platform:billing_revenue", "billing_revenue"): -30000,
        ("platform:tax_payable", "tax"): -6000,
        ("platform:cash", "processor_fee"): -fee,
        ("platform:fee_expense", "processor_fee"): fee,
    }
    assert await ledger_sum() == 0
