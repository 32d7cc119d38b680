"""POST /api/revenue/calculate: the period's splits from the ledger, and what-if previews."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.core.db import sessionmaker
from app.models import LedgerEntry, LedgerTransaction
from tests.factories import signed_in
from tests.revenue.journey import FEE_1900, PLATFORM_1900, SHARE_1900, published_project, refund, sell


async def ledger_size() -> tuple[int, int]:
    async with sessionmaker()() as db:
        transactions = (await db.execute(select(func.count()).select_from(LedgerTransaction))).scalar_one()
        entries = (await db.execute(select(func.count()).select_from(LedgerEntry))).scalar_one()
    return transactions, entries


async def test_builder_previews_a_sale_with_their_plan_fee_and_nothing_is_written(client):
    builder = await signed_in(client, "builder")
    before = await ledger_size()

    response = await client.post(
        "/api/revenue/calculate", json={"priceMinor": 1900, "currency": "EUR"}, headers=builder.headers
    )

    assert response.status_code == 200, response.text
    preview = response.json()["preview"]
    assert preview == {
        "priceMinor": 1900,
        "currency": "eur",
        "platformFeeBps": 2000,  # the free plan's
        "processorFeeMinor": FEE_1900,
        "platformFeeMinor": PLATFORM_1900,
        "builderShareMinor": SHARE_1900,
    }
    assert await ledger_size() == before


async def test_preview_follows_the_plan_and_a_what_if_fee(client):
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    plan = await client.put(
        f"/api/users/{builder.id}/subscription", json={"plan": "pro"}, headers=admin.headers
    )
    assert plan.status_code == 200, plan.text

    pro = await client.post("/api/revenue/calculate", json={"priceMinor": 10_000}, headers=builder.headers)
    what_if = await client.post(
        "/api/revenue/calculate", json={"priceMinor": 10_000, "platformFeeBps": 0}, headers=builder.headers
    )
    tiny = await client.post("/api/revenue/calculate", json={"priceMinor": 20}, headers=builder.headers)

    assert pro.json()["preview"]["platformFeeBps"] == 1500
    assert pro.json()["preview"]["platformFeeMinor"] == 1500
    assert pro.json()["preview"]["builderShareMinor"] == 10_000 - 320 - 1500
    assert what_if.json()["preview"]["platformFeeMinor"] == 0
    # The processor's fixed fee eats a tiny sale whole; nothing goes negative.
    assert tiny.json()["preview"] == {
        "priceMinor": 20,
        "currency": "usd",
        "platformFeeBps": 1500,
        "processorFeeMinor": 20,
        "platformFeeMinor": 0,
        "builderShareMinor": 0,
    }


async def test_period_totals_per_currency_and_project_come_from_the_ledger(client):
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    support = await published_project(client, builder, name="Support")
    sales = await published_project(client, builder, name="Sales", price=5000, currency="eur")
    support_sales = await sell(client, support, 3)
    await sell(client, sales, 1)
    await refund(client, admin, support_sales[0]["id"])

    response = await client.post("/api/revenue/calculate", json={}, headers=builder.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["builderId"] == str(builder.id)
    assert body["preview"] is None
    usd, eur = sorted(body["totals"], key=lambda t: t["currency"], reverse=True)
    assert usd == {
        "currency": "usd",
        "salesCount": 3,
        "refundsCount": 1,
        "grossMinor": 3 * 1900,
        "processorFeeMinor": 3 * FEE_1900,
        "platformFeeMinor": 3 * PLATFORM_1900,
        "builderShareMinor": 3 * SHARE_1900,
        "refundsMinor": 1900,
        "refundedPlatformFeeMinor": PLATFORM_1900,
        "refundedBuilderShareMinor": SHARE_1900,
        "netMinor": 2 * SHARE_1900,
    }
    assert eur["grossMinor"] == 5000
    assert eur["processorFeeMinor"] + eur["platformFeeMinor"] + eur["builderShareMinor"] == 5000
    assert {(p["projectId"], p["currency"], p["salesCount"]) for p in body["projects"]} == {
        (str(support), "usd", 3),
        (str(sales), "eur", 1),
    }

    only_sales = await client.post(
        "/api/revenue/calculate", json={"projectId": str(sales)}, headers=builder.headers
    )
    assert [t["currency"] for t in only_sales.json()["totals"]] == ["eur"]

    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    empty = await client.post("/api/revenue/calculate", json={"from": future}, headers=builder.headers)
    assert empty.json()["totals"] == []
    assert empty.json()["from"] == future.replace("+00:00", "Z")


async def test_admin_calculates_for_any_builder_or_the_whole_platform(client):
    first = await signed_in(client, "builder")
    second = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    await sell(client, await published_project(client, first), 1)
    await sell(client, await published_project(client, second), 2)

    one = await client.post(
        "/api/revenue/calculate", json={"builderId": str(first.id)}, headers=admin.headers
    )
    everyone = await client.post("/api/revenue/calculate", json={}, headers=admin.headers)

    assert one.json()["totals"][0]["salesCount"] == 1
    assert everyone.json()["builderId"] is None
    assert everyone.json()["totals"][0]["salesCount"] == 3


async def test_builder_cannot_calculate_another_builders_revenue(client):
    owner = await signed_in(client, "builder")
    snoop = await signed_in(client, "builder")
    end_user = await signed_in(client, "end_user")
    project = await published_project(client, owner)

    by_builder = await client.post(
        "/api/revenue/calculate", json={"builderId": str(owner.id)}, headers=snoop.headers
    )
    by_project = await client.post(
        "/api/revenue/calculate", json={"projectId": str(project)}, headers=snoop.headers
    )
    by_end_user = await client.post("/api/revenue/calculate", json={}, headers=end_user.headers)

    assert by_builder.status_code == 404
    assert by_builder.json()["error"]["code"] == "user_not_found"
    assert by_project.status_code == 404
    assert by_project.json()["error"]["code"] == "project_not_found"
    assert by_end_user.status_code == 403
    assert by_end_user.json()["error"]["code"] == "permission_denied"


@pytest.mark.parametrize(
    "body",
    [
        {"priceMinor": -1},
        {"platformFeeBps": 10_001, "priceMinor": 100},
        {"currency": "usd"},
        {"platformFeeBps": 100},
        {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        {"from": "2026-02-01T00:00:00", "to": "2026-01-01T00:00:00Z"},
        {"currency": "dollars", "priceMinor": 100},
        {"unknown": 1},
    ],
)
async def test_calculate_refuses_bad_input(client, body):
    builder = await signed_in(client, "builder")
    response = await client.post("/api/revenue/calculate", json=body, headers=builder.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
