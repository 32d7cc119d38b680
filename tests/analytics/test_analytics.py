"""The analytics endpoints read the published marts: numbers per persona, ranges and slices,
and which warehouse version every answer reflects."""

from typing import Any

import httpx
import pytest

from app.core.config import Settings
from tests.analytics.marts import publish, revenue_row
from tests.analytics.world import MARCH, World, build_world, d, marts
from tests.factories import signed_in


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    return await build_world(client)


async def get(client: httpx.AsyncClient, path: str, who: Any, expect: int = 200) -> dict[str, Any]:
    response = await client.get(path, headers=who.headers)
    assert response.status_code == expect, response.text
    return dict(response.json())


async def test_before_the_first_publish_every_endpoint_answers_zeros_and_no_version(
    client: httpx.AsyncClient, world: World
) -> None:
    paths = [
        "/api/analytics/platform",
        f"/api/analytics/user/{world.ada.id}",
        f"/api/users/{world.shop1.id}/analytics",
        f"/api/analytics/projects/{world.copilot}",
        f"/api/projects/{world.copilot}/analytics",
        f"/api/analytics/widgets/{world.w1}",
        "/api/analytics/revenue",
        "/api/analytics/usage",
        "/api/marketplace/analytics",
    ]
    for path in paths:
        body = await get(client, path, world.admin)
        assert body["warehouse"] is None, path

    platform = await get(client, "/api/analytics/platform", world.admin)
    assert platform["kpis"]["gmvMinor"] == 0
    assert platform["series"] == []
    assert platform["leaderboards"]["buildersByRevenue"] == []
    shop = await get(client, f"/api/analytics/user/{world.shop1.id}", world.shop1)
    assert shop["endUser"]["quota"] == {
        "plan": "free",
        "monthlyMessages": 1000,
        "usedThisMonth": 0,
        "remaining": 1000,
    }


async def test_admin_sees_platform_kpis_series_and_leaderboards_with_names(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    version = publish(settings.warehouse_dir, marts(world))

    body = await get(client, f"/api/analytics/platform?{MARCH}", world.admin)

    assert body["warehouse"]["version"] == version
    assert body["warehouse"]["asOf"] is not None
    assert body["warehouse"]["publishedAt"] is not None
    assert (body["from"], body["to"], body["granularity"], body["currency"]) == (
        "2026-03-01",
        "2026-03-31",
        "day",
        "usd",
    )
    kpis = body["kpis"]
    assert (kpis["gmvMinor"], kpis["refundedMinor"], kpis["platformFeesMinor"], kpis["netRevenueMinor"]) == (
        6600,
        1900,
        940,
        940,
    )
    assert (kpis["signups"], kpis["builderSignups"], kpis["endUserSignups"]) == (4, 1, 3)
    assert (kpis["purchases"], kpis["refunds"], kpis["listingViews"]) == (4, 1, 30)
    assert kpis["conversionRate"] == pytest.approx(4 / 30)
    # USD only: the EUR sale of 5 March is not in this series.
    assert [p["periodStart"] for p in body["series"]] == ["2026-03-02", "2026-03-03", "2026-03-10"]
    assert body["series"][0]["gmvMinor"] == 3800
    assert body["series"][0]["signups"] == 3
    # Active users of the last day in the series, not a sum of days.
    assert (kpis["activeBuilders"], kpis["activeEndUsers"]) == (1, 1)

    boards = body["leaderboards"]
    assert (boards["grain"], boards["periodStart"]) == ("all_time", "1970-01-01")
    assert boards["buildersByRevenue"] == [
        {"rank": 1, "id": str(world.ada.id), "name": "builder user", "value": 6600}
    ]
    assert [(e["name"], e["value"]) for e in boards["projectsByPurchases"]] == [
        ("Copilot", 3),
        ("Recipes", 1),
        ("Contracts", 1),
    ]
    assert boards["widgetsByUsage"] == [{"rank": 1, "id": str(world.w1), "name": None, "value": 46}]

    top_two = await get(client, f"/api/analytics/platform?{MARCH}&limit=2", world.admin)
    assert len(top_two["leaderboards"]["projectsByPurchases"]) == 2
    monthly = await get(client, f"/api/analytics/platform?{MARCH}&leaderboard=month", world.admin)
    assert monthly["leaderboards"]["periodStart"] == "2026-03-01"
    assert [e["value"] for e in monthly["leaderboards"]["buildersByRevenue"]] == [4700]
    assert monthly["leaderboards"]["projectsByPurchases"] == []
    euros = await get(client, f"/api/analytics/platform?{MARCH}&currency=EUR", world.admin)
    assert euros["currency"] == "eur"
    assert euros["kpis"]["gmvMinor"] == 5000
    assert [e["id"] for e in euros["leaderboards"]["buildersByRevenue"]] == [str(world.grace.id)]


async def test_granularity_slices_series_and_distinct_counts_come_from_the_periods_own_rows(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    publish(settings.warehouse_dir, marts(world))

    weekly = await get(client, f"/api/analytics/platform?{MARCH}&granularity=week", world.admin)
    monthly = await get(client, f"/api/analytics/platform?{MARCH}&granularity=month", world.admin)
    usage = await get(client, f"/api/analytics/usage?{MARCH}&granularity=week", world.ada)

    assert [(p["periodStart"], p["gmvMinor"], p["activeEndUsers"]) for p in weekly["series"]] == [
        ("2026-03-02", 3800 + 900, 3),
        ("2026-03-09", 1900, 1),
    ]
    assert [(p["periodStart"], p["gmvMinor"]) for p in monthly["series"]] == [("2026-03-01", 6600)]
    assert (monthly["kpis"]["activeBuilders"], monthly["kpis"]["activeEndUsers"]) == (2, 3)
    # Ada's widgets that week: w1 (3 sessions at most on a day) and w2 (1): 4, not the 6 of the days.
    assert [(p["periodStart"], p["messages"], p["sessions"]) for p in usage["series"]] == [
        ("2026-03-02", 19, 4),
        ("2026-03-09", 1, 1),
    ]
    first_week_only = await get(
        client, "/api/analytics/usage?from=2026-03-02&to=2026-03-08&granularity=day", world.ada
    )
    assert first_week_only["totals"]["messages"] == 19
    assert [p["periodStart"] for p in first_week_only["series"]] == ["2026-03-02", "2026-03-03"]


async def test_a_builder_sees_sales_payouts_usage_and_customers_of_their_projects(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    publish(settings.warehouse_dir, marts(world))

    body = await get(client, f"/api/analytics/user/{world.ada.id}?{MARCH}", world.ada)
    same = await get(client, f"/api/users/{world.ada.id}/analytics?{MARCH}", world.ada)

    assert body == same
    assert body["personas"] == ["builder"]
    assert body["endUser"] is None
    builder = body["builder"]
    revenue = builder["revenue"]
    assert (revenue["sales"], revenue["grossMinor"], revenue["refunds"], revenue["netGrossMinor"]) == (
        4,
        6600,
        1,
        4700,
    )
    assert builder["payouts"]["paidMinor"] == 3000
    assert builder["usage"]["messages"] == 20
    assert [(p["name"], p["sales"], p["netGrossMinor"]) for p in builder["projects"]] == [
        ("Copilot", 3, 3800),
        ("Recipes", 1, 900),
    ]
    customers = {c["userId"]: c for c in builder["customers"]}
    shop1, shop2 = customers[str(world.shop1.id)], customers[str(world.shop2.id)]
    assert (shop1["messages"], shop1["purchases"], shop1["spendMinor"], shop1["name"]) == (
        16,
        2,
        2800,
        "end_user user",
    )
    assert (shop2["messages"], shop2["purchases"], shop2["spendMinor"]) == (4, 1, 1900)
    # Grace's widget used by Shop1 is not Ada's business.
    assert builder["customers"][0]["userId"] == str(world.shop1.id)

    april = await get(client, f"/api/analytics/user/{world.ada.id}?from=2026-04-01&to=2026-04-30", world.ada)
    assert april["builder"]["revenue"]["sales"] == 1


async def test_an_end_user_sees_usage_per_widget_spend_and_remaining_quota(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    publish(settings.warehouse_dir, marts(world))

    body = await get(client, f"/api/analytics/user/{world.shop1.id}?{MARCH}", world.shop1)

    assert body["builder"] is None
    section = body["endUser"]
    assert section["spend"] == {"purchases": 2, "spendMinor": 2800, "refunds": 0, "refundedMinor": 0}
    assert section["usage"]["messages"] == 23
    assert [(w["widgetId"], w["messages"]) for w in section["widgets"]] == [
        (str(world.w1), 16),
        (str(world.w3), 7),
    ]
    # This month (whatever the range asked): 30 messages of the free plan's 1,000.
    assert section["quota"] == {
        "plan": "free",
        "monthlyMessages": 1000,
        "usedThisMonth": 30,
        "remaining": 970,
    }
    eur = await get(client, f"/api/analytics/user/{world.shop1.id}?{MARCH}&currency=eur", world.shop1)
    assert eur["endUser"]["spend"]["spendMinor"] == 5000


async def test_a_user_holding_both_personas_gets_both_sections_and_others_get_404(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    publish(settings.warehouse_dir, marts(world))
    both = await signed_in(client, "builder", personas=["builder", "end_user"])

    mine = await get(client, f"/api/analytics/user/{both.id}", both)
    assert mine["builder"] is not None
    assert mine["endUser"] is not None

    admin_view = await get(client, f"/api/analytics/user/{world.shop1.id}?{MARCH}", world.admin)
    assert admin_view["endUser"]["usage"]["messages"] == 23
    snoop = await client.get(f"/api/analytics/user/{world.shop1.id}", headers=world.ada.headers)
    assert snoop.status_code == 404
    assert snoop.json()["error"]["code"] == "user_not_found"


async def test_project_analytics_for_its_owner_and_admins_only(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    publish(settings.warehouse_dir, marts(world))

    body = await get(client, f"/api/analytics/projects/{world.copilot}?{MARCH}&granularity=month", world.ada)
    admin = await get(
        client, f"/api/projects/{world.copilot}/analytics?{MARCH}&granularity=month", world.admin
    )

    assert body == admin
    assert body["name"] == "Copilot"
    assert (body["revenue"]["sales"], body["revenue"]["netGrossMinor"]) == (3, 3800)
    assert body["usage"]["messages"] == 20
    assert [(p["periodStart"], p["netGrossMinor"]) for p in body["revenueSeries"]] == [("2026-03-01", 3800)]
    assert [(p["periodStart"], p["visitors"]) for p in body["usageSeries"]] == [("2026-03-01", 3)]
    assert [(w["widgetId"], w["endUserId"]) for w in body["widgets"]] == [
        (str(world.w1), str(world.shop1.id)),
        (str(world.w2), str(world.shop2.id)),
    ]
    theirs = await client.get(f"/api/analytics/projects/{world.copilot}", headers=world.grace.headers)
    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "project_not_found"


async def test_widget_analytics_for_admins_its_end_user_and_its_projects_builder(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    publish(settings.warehouse_dir, marts(world))

    for who in (world.admin, world.shop1, world.ada):
        body = await get(client, f"/api/analytics/widgets/{world.w1}?{MARCH}&granularity=week", who)
        assert body["usage"]["messages"] == 16
        assert (body["projectId"], body["endUserId"]) == (str(world.copilot), str(world.shop1.id))
        assert [(p["periodStart"], p["sessions"]) for p in body["series"]] == [
            ("2026-03-02", 3),
            ("2026-03-09", 1),
        ]
    for who in (world.shop2, world.grace):
        response = await client.get(f"/api/widgets/{world.w1}/analytics", headers=who.headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "widget_not_found"


async def test_revenue_for_the_platform_one_builder_or_project_and_builders_see_only_theirs(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    publish(settings.warehouse_dir, marts(world))

    platform = await get(client, f"/api/analytics/revenue?{MARCH}", world.admin)
    grace_eur = await get(
        client, f"/api/analytics/revenue?{MARCH}&currency=eur&builderId={world.grace.id}", world.admin
    )
    recipes = await get(client, f"/api/analytics/revenue?{MARCH}&projectId={world.recipes}", world.admin)
    ada = await get(client, f"/api/analytics/revenue?{MARCH}&granularity=week", world.ada)

    assert (platform["scope"], platform["totals"]["sales"], platform["totals"]["grossMinor"]) == (
        "platform",
        4,
        6600,
    )
    assert grace_eur["totals"]["grossMinor"] == 5000
    assert (recipes["totals"]["sales"], recipes["payouts"]) == (1, None)
    assert (ada["scope"], ada["builderId"], ada["totals"]["netBuilderShareMinor"]) == (
        "builder",
        str(world.ada.id),
        platform["totals"]["netBuilderShareMinor"],
    )
    assert ada["payouts"]["paidMinor"] == 3000
    assert [(p["periodStart"], p["sales"]) for p in ada["series"]] == [("2026-03-02", 3), ("2026-03-09", 1)]

    other = await client.get(f"/api/analytics/revenue?builderId={world.ada.id}", headers=world.grace.headers)
    assert other.status_code == 404
    not_hers = await client.get(
        f"/api/analytics/revenue?projectId={world.copilot}", headers=world.grace.headers
    )
    assert not_hers.status_code == 404
    shop = await client.get("/api/analytics/revenue", headers=world.shop1.headers)
    assert shop.status_code == 403


async def test_usage_for_admins_builders_and_end_users_each_see_their_own_widgets(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    publish(settings.warehouse_dir, marts(world))

    admin = await get(client, f"/api/analytics/usage?{MARCH}", world.admin)
    ada = await get(client, f"/api/analytics/usage?{MARCH}", world.ada)
    shop1 = await get(client, f"/api/analytics/usage?{MARCH}", world.shop1)
    one_project = await get(client, f"/api/analytics/usage?{MARCH}&projectId={world.contracts}", world.admin)

    assert (admin["scope"], admin["totals"]["messages"]) == ("platform", 27)
    assert [(p["name"], p["messages"]) for p in admin["projects"]] == [("Copilot", 20), ("Contracts", 7)]
    assert (ada["scope"], ada["totals"]["messages"]) == ("builder", 20)
    assert {w["widgetId"] for w in ada["widgets"]} == {str(world.w1), str(world.w2)}
    assert (shop1["scope"], shop1["totals"]["messages"]) == ("end_user", 23)
    assert {w["widgetId"] for w in shop1["widgets"]} == {str(world.w1), str(world.w3)}
    assert one_project["totals"]["messages"] == 7
    top_one = await get(client, f"/api/analytics/usage?{MARCH}&limit=1", world.admin)
    assert [w["widgetId"] for w in top_one["widgets"]] == [str(world.w1)]


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ("from=2026-03-02&to=2026-03-01", "invalid_period", None),
        ("from=2023-01-01&to=2026-03-01", "period_too_long", None),
        ("from=2026-02-30", "validation_error", "from"),
        ("to=yesterday", "validation_error", "to"),
        ("granularity=year", "validation_error", "granularity"),
        ("limit=0", "validation_error", "limit"),
        ("limit=101", "validation_error", "limit"),
        ("currency=dollars", "validation_error", "currency"),
        ("leaderboard=decade", "validation_error", "leaderboard"),
    ],
)
async def test_bad_query_parameters_are_refused_in_the_error_shape(
    client: httpx.AsyncClient, query: str, code: str, field: str | None
) -> None:
    admin = await signed_in(client, "super_admin")

    response = await client.get(f"/api/analytics/platform?{query}", headers=admin.headers)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert [e["loc"] for e in error["details"]["errors"]] == [["query", field]]


async def test_a_publish_changes_the_answer_at_once_though_answers_are_cached(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    first = publish(settings.warehouse_dir, marts(world))
    before = await get(client, f"/api/analytics/projects/{world.recipes}?{MARCH}", world.ada)
    assert before == await get(client, f"/api/analytics/projects/{world.recipes}?{MARCH}", world.ada)

    changed = marts(world)
    changed["revenue_daily"].append(
        revenue_row(d("2026-03-20"), world.recipes, world.ada.id, sales=2, gross=1800)
    )
    second = publish(settings.warehouse_dir, changed)
    after = await get(client, f"/api/analytics/projects/{world.recipes}?{MARCH}", world.ada)

    assert (before["warehouse"]["version"], after["warehouse"]["version"]) == (first, second)
    assert (before["revenue"]["sales"], after["revenue"]["sales"]) == (1, 3)
