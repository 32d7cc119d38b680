"""Marts the pipeline accepted never make an endpoint fail: NULL or malformed ids, widgets whose
rows disagree on their owner. Series of weeks or months count only the days of the range, and
marketplace totals never count negative purchases."""

import logging
from typing import Any
from uuid import uuid4

import httpx
import pytest

from app.core.config import Settings
from tests.analytics.marts import publish, revenue_row, usage_rows
from tests.analytics.world import MARCH, World, build_world, d, marts


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    return await build_world(client)


async def get(client: httpx.AsyncClient, path: str, who: Any, expect: int = 200) -> dict[str, Any]:
    response = await client.get(path, headers=who.headers)
    assert response.status_code == expect, response.text
    return dict(response.json())


def _use(day: str, widget: Any, project: Any, builder: Any, end_user: Any, messages: int) -> dict[str, Any]:
    return {
        "day": d(day),
        "widget_id": widget,
        "project_id": project,
        "builder_id": builder,
        "end_user_id": end_user,
        "messages": messages,
        "sessions": 1,
        "visitors": 1,
    }


async def test_null_and_malformed_ids_in_the_marts_never_make_an_endpoint_fail(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    rows = marts(world)
    orphan = uuid4()  # a Copilot widget of Shop1 whose project no project.created event describes
    rows["usage_by_period"] += usage_rows(
        [
            _use("2026-03-05", orphan, world.copilot, None, world.shop1.id, 2),
            _use("2026-03-05", "not-a-uuid", world.copilot, world.ada.id, world.shop1.id, 90),
            _use("2026-03-05", uuid4(), "garbage", world.ada.id, None, 80),
            _use("2026-03-05", uuid4(), None, world.ada.id, "nobody", 70),
        ]
    )
    rows["leaderboards"] += [
        {
            "board": "widgets_by_usage",
            "grain": "all_time",
            "period_start": d("1970-01-01"),
            "currency": "",
            "rank": rank,
            "entity_id": entity,
            "value": 1,
        }
        for rank, entity in ((2, None), (3, "not-a-uuid"))
    ]
    rows["fct_revenue_splits"].append(
        {
            "purchase_id": uuid4(),
            "project_id": world.copilot,
            "builder_id": world.ada.id,
            "buyer_id": "not-a-uuid",
            "currency": "usd",
            "completed_day": d("2026-03-06"),
            "gross_minor": 100,
        }
    )
    publish(settings.warehouse_dir, rows)

    widget = await get(client, f"/api/analytics/widgets/{orphan}?{MARCH}", world.shop1)
    assert (widget["projectId"], widget["endUserId"], widget["usage"]["messages"]) == (
        str(world.copilot),
        str(world.shop1.id),
        2,
    )
    # The marts name no builder for it: only its end user (and administrators) may read it.
    await get(client, f"/api/analytics/widgets/{orphan}?{MARCH}", world.ada, expect=404)
    await get(client, f"/api/analytics/widgets/{orphan}?{MARCH}", world.admin)

    usage = await get(client, f"/api/analytics/usage?{MARCH}&limit=100", world.admin)
    assert usage["totals"]["messages"] == 27 + 2 + 90 + 80 + 70
    assert "not-a-uuid" not in {w["widgetId"] for w in usage["widgets"]}
    by_widget = {w["widgetId"]: w for w in usage["widgets"]}
    assert (by_widget[str(orphan)]["projectId"], by_widget[str(orphan)]["endUserId"]) == (
        str(world.copilot),
        str(world.shop1.id),
    )
    assert {w["messages"]: (w["projectId"], w["endUserId"]) for w in usage["widgets"]}[80] == (None, None)
    assert {str(world.copilot), str(world.contracts)} == {p["projectId"] for p in usage["projects"]}
    await get(client, f"/api/analytics/usage?{MARCH}", world.ada)
    await get(client, f"/api/analytics/usage?{MARCH}", world.shop1)

    platform = await get(client, f"/api/analytics/platform?{MARCH}", world.admin)
    assert platform["leaderboards"]["widgetsByUsage"] == [
        {"rank": 1, "id": str(world.w1), "name": None, "value": 46}
    ]

    ada = await get(client, f"/api/analytics/user/{world.ada.id}?{MARCH}&limit=100", world.ada)
    customers = {c["userId"] for c in ada["builder"]["customers"]}
    assert customers == {str(world.shop1.id), str(world.shop2.id)}
    await get(client, f"/api/analytics/user/{world.shop1.id}?{MARCH}", world.shop1)
    await get(client, f"/api/analytics/projects/{world.copilot}?{MARCH}", world.ada)


async def test_a_widget_whose_rows_name_several_end_users_is_for_administrators_only(
    client: httpx.AsyncClient, world: World, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    rows = marts(world)
    shared = uuid4()
    rows["usage_by_period"] += usage_rows(
        [
            _use("2026-03-05", shared, world.copilot, world.ada.id, world.shop1.id, 1),
            _use("2026-03-06", shared, world.copilot, world.ada.id, world.shop2.id, 1),
        ]
    )
    publish(settings.warehouse_dir, rows)

    with caplog.at_level(logging.WARNING, logger="bazaar.analytics"):
        for who in (world.shop1, world.shop2, world.ada):
            await get(client, f"/api/analytics/widgets/{shared}?{MARCH}", who, expect=404)
    assert any(str(shared) in r.getMessage() for r in caplog.records)

    body = await get(client, f"/api/analytics/widgets/{shared}?{MARCH}", world.admin)
    assert body["usage"]["messages"] == 2
    assert (body["projectId"], body["endUserId"]) == (str(world.copilot), None)
    # A consistent widget keeps its readers.
    await get(client, f"/api/analytics/widgets/{world.w1}?{MARCH}", world.ada)


async def test_a_weekly_series_of_one_wednesday_counts_only_that_day(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    publish(settings.warehouse_dir, marts(world))

    # Wednesday 4 March: only w3 (7 messages); its week also holds Monday's and Tuesday's usage.
    usage = await get(
        client, "/api/analytics/usage?from=2026-03-04&to=2026-03-04&granularity=week", world.admin
    )
    [point] = usage["series"]
    assert point["periodStart"] == "2026-03-02"
    assert {k: point[k] for k in usage["totals"]} == usage["totals"]
    assert usage["totals"] == {"impressions": 0, "opens": 0, "messages": 7, "tokens": 700}
    # Distinct counts are still the week's own.
    assert point["sessions"] == 3 + 1 + 2
    monthly = await get(
        client, "/api/analytics/usage?from=2026-03-04&to=2026-03-04&granularity=month", world.admin
    )
    assert [p["messages"] for p in monthly["series"]] == [7]

    # Tuesday 3 March on the platform: 1 signup and 1 purchase that day, 4 and 3 that week.
    platform = await get(
        client, "/api/analytics/platform?from=2026-03-03&to=2026-03-03&granularity=week", world.admin
    )
    [day] = platform["series"]
    kpis = platform["kpis"]
    assert day["periodStart"] == "2026-03-02"
    assert (day["signups"], day["purchases"], day["refunds"]) == (kpis["signups"], kpis["purchases"], 0)
    assert (day["signups"], day["purchases"]) == (1, 1)
    assert day["gmvMinor"] == kpis["gmvMinor"] == 900
    assert day["conversionRate"] == kpis["conversionRate"] == pytest.approx(1 / 10)
    assert day["activeEndUsers"] == 3


async def test_marketplace_completed_purchases_are_never_negative(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    rows = marts(world)
    # 20 March: Shop1 is refunded for the Recipes purchase of 3 March, nothing is sold that day.
    rows["revenue_daily"].append(
        revenue_row(
            d("2026-03-20"), world.recipes, world.ada.id, sales=0, gross=0, refunds=1, refunded_gross=900
        )
    )
    for split in rows["fct_revenue_splits"]:
        if split["project_id"] == world.recipes and split["completed_day"] == d("2026-03-03"):
            split.update(is_refunded=True, refunded_day=d("2026-03-20"))
    publish(settings.warehouse_dir, rows)

    refund_day = await get(client, "/api/marketplace/analytics?from=2026-03-20&to=2026-03-20", world.ada)
    [usd] = refund_day["totals"]
    assert (usd["currency"], usd["completed"], usd["refunded"]) == ("usd", 0, 1)

    march = await get(client, f"/api/marketplace/analytics?{MARCH}", world.ada)
    # Sold in March and not refunded: the two Copilot purchases of 2 March.
    assert [(t["currency"], t["completed"]) for t in march["totals"]] == [("usd", 2)]
