"""GET /api/revenue/user/{id} and /project/{id}: balances and series that add up."""

from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import signed_in
from tests.revenue.journey import (
    FEE_1900,
    PLATFORM_1900,
    SHARE_1900,
    distribute,
    published_project,
    refund,
    sell,
)

NO_DELAY = {"payout_settlement_delay_days": 0}


def adds_up(totals: dict[str, int]) -> None:
    assert totals["availableMinor"] == (
        totals["earnedMinor"] - totals["refundedMinor"] - totals["paidOutMinor"] - totals["inTransitMinor"]
    )
    assert totals["balanceMinor"] == totals["availableMinor"] + totals["pendingMinor"]


@pytest.mark.parametrize("settings_changes", [NO_DELAY])
async def test_builder_revenue_after_sales_a_payout_and_a_refund_adds_up(client):
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    project = await published_project(client, builder)
    purchases = await sell(client, project, 3)
    paid = await distribute(client, admin)
    assert paid.json()["totals"][0]["paidMinor"] == 3 * SHARE_1900
    await sell(client, project, 1)
    await refund(client, admin, purchases[0]["id"])  # after its share was paid out

    response = await client.get(f"/api/revenue/user/{builder.id}", headers=builder.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["userId"] == str(builder.id)
    [usd] = body["totals"]
    assert usd == {
        "currency": "usd",
        "earnedMinor": 4 * SHARE_1900,
        "pendingMinor": 0,
        "refundedMinor": SHARE_1900,
        "paidOutMinor": 3 * SHARE_1900,
        "inTransitMinor": 0,
        "availableMinor": 0,
        "balanceMinor": 0,
        "salesCount": 4,
        "refundsCount": 1,
    }
    adds_up(usd)
    [month] = body["series"]
    assert body["period"] == "month"
    assert month["periodStart"] == datetime.now(UTC).strftime("%Y-%m-01T00:00:00Z")
    assert month["salesCount"] == 4
    assert month["refundsCount"] == 1
    assert month["grossMinor"] == 4 * 1900
    assert month["builderShareMinor"] == 4 * SHARE_1900
    assert month["refundedBuilderShareMinor"] == SHARE_1900
    assert month["paidOutMinor"] == 3 * SHARE_1900


async def test_shares_wait_in_pending_until_the_delay_and_a_refund_of_one_waits_with_it(client):
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    purchases = await sell(client, await published_project(client, builder), 3)
    await refund(client, admin, purchases[0]["id"])

    response = await client.get(f"/api/revenue/user/{builder.id}?period=day", headers=builder.headers)

    [usd] = response.json()["totals"]
    assert usd["pendingMinor"] == 2 * SHARE_1900
    assert usd["earnedMinor"] == usd["refundedMinor"] == usd["availableMinor"] == 0
    assert usd["balanceMinor"] == 2 * SHARE_1900
    adds_up(usd)
    [today] = response.json()["series"]
    assert today["periodStart"] == datetime.now(UTC).strftime("%Y-%m-%dT00:00:00Z")


async def test_series_is_limited_to_the_period_asked_for(client):
    builder = await signed_in(client, "builder")
    await sell(client, await published_project(client, builder), 1)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    later = await client.get(
        f"/api/revenue/user/{builder.id}", params={"from": tomorrow}, headers=builder.headers
    )
    week = await client.get(
        f"/api/revenue/user/{builder.id}",
        params={"period": "week", "from": yesterday, "to": tomorrow},
        headers=builder.headers,
    )
    backwards = await client.get(
        f"/api/revenue/user/{builder.id}", params={"from": tomorrow, "to": yesterday}, headers=builder.headers
    )
    bad_period = await client.get(f"/api/revenue/user/{builder.id}?period=year", headers=builder.headers)

    assert later.json()["series"] == []
    assert later.json()["totals"][0]["pendingMinor"] == SHARE_1900  # totals are as of now
    [this_week] = week.json()["series"]
    monday = datetime.now(UTC).date() - timedelta(days=datetime.now(UTC).weekday())
    assert this_week["periodStart"] == f"{monday.isoformat()}T00:00:00Z"
    assert backwards.status_code == bad_period.status_code == 422


async def test_project_revenue_shows_gross_fees_share_purchases_and_refunds(client):
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    project = await published_project(client, builder)
    other = await published_project(client, builder, name="Other")
    purchases = await sell(client, project, 2)
    await sell(client, other, 1)
    await refund(client, admin, purchases[1]["id"])

    response = await client.get(f"/api/revenue/project/{project}", headers=builder.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["projectId"], body["builderId"]) == (str(project), str(builder.id))
    assert body["purchasesCount"] == 1
    [usd] = body["totals"]
    assert usd["salesCount"] == 2
    assert usd["refundsCount"] == 1
    assert usd["grossMinor"] == 2 * 1900
    assert usd["processorFeeMinor"] == 2 * FEE_1900
    assert usd["platformFeeMinor"] == 2 * PLATFORM_1900
    assert usd["builderShareMinor"] == 2 * SHARE_1900
    assert usd["refundsMinor"] == 1900
    assert usd["netMinor"] == SHARE_1900
    assert body["series"][0]["grossMinor"] == 2 * 1900
    as_admin = await client.get(f"/api/revenue/project/{project}", headers=admin.headers)
    assert as_admin.json() == body


async def test_free_sales_count_as_purchases_but_move_no_money(client):
    builder = await signed_in(client, "builder")
    project = await published_project(client, builder, price=0)
    await sell(client, project, 2)

    body = (await client.get(f"/api/revenue/project/{project}", headers=builder.headers)).json()

    assert body["purchasesCount"] == 2
    assert body["totals"] == []
