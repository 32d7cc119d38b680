"""Invoice numbers are sequential per year without gaps or duplicates, even under concurrency
and when an issuing transaction rolls back."""

import asyncio
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from app.billing.service import LineItem, billing_service
from app.core.config import Settings
from app.core.db import commit, sessionmaker
from tests.billing.steps import charge, invoices, stripe_app
from tests.factories import create_user, signed_in

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def number(sequence: int) -> str:
    return f"INV-{datetime.now(UTC).year}-{sequence:06d}"


async def test_twenty_concurrent_charges_get_numbers_one_to_twenty(client):
    admin = await signed_in(client, "super_admin")
    customers = [await create_user("end_user") for _ in range(4)]

    answers = await asyncio.gather(
        *(charge(client, admin, customers[i % 4].id, key=f"concurrent-{i}") for i in range(20))
    )

    assert sorted(a["number"] for a in answers) == [number(n) for n in range(1, 21)]
    stored = await invoices()
    assert [i.number for i in stored] == [number(n) for n in range(1, 21)]
    assert {i.status for i in stored} == {"paid"}


async def test_a_rolled_back_issue_frees_its_number_for_the_transaction_waiting_behind_it(
    client, settings: Settings
):
    customer = await create_user("end_user")
    admin = await signed_in(client, "super_admin")
    lines = [LineItem("Setup", 1000)]

    async def issue(db):
        return await billing_service.issue(
            db, settings, user_id=customer.id, kind="charge", reference=None, currency="usd",
            lines=lines, actor_id=None,
        )  # fmt: skip

    async with sessionmaker()() as first, sessionmaker()() as second:
        abandoned = await issue(first)
        assert abandoned.number == number(1)
        waiting = asyncio.create_task(issue(second))
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the second issue must wait for the counter row"
        await first.rollback()
        kept = await asyncio.wait_for(waiting, timeout=10)
        await commit(second)

    assert kept.number == number(1)
    after = await charge(client, admin, customer.id, key=str(uuid4()))
    assert after["number"] == number(2)
    assert [i.number for i in await invoices()] == [number(1), number(2)]


async def test_a_charge_the_provider_refuses_rolls_back_and_leaves_no_gap(settings: Settings):
    async with stripe_app(settings) as (_, client, fake, _settings):
        admin = await signed_in(client, "super_admin")
        customer = await create_user("end_user")
        key = fake.api_key
        fake.api_key = "sk_test_rotated"  # Stripe now refuses the platform's key

        refused = await client.post(
            "/api/billing/charge",
            json={"userId": str(customer.id), "currency": "usd",
                  "items": [{"description": "Setup", "unitAmountMinor": 1000}]},
            headers={**admin.headers, "Idempotency-Key": "refused"},
        )  # fmt: skip
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "payment_provider_error"
        assert await invoices() == []

        fake.api_key = key
        accepted = await charge(client, admin, customer.id, key="refused")

    assert accepted["number"] == number(1)
    assert accepted["status"] == "open"
    assert accepted["payment"]["checkoutUrl"].startswith("https://checkout.stripe.com/")
