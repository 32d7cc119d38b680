"""GET /api/marketplace/analytics: what sold, for whom, read from the published marts."""

import httpx

from app.core.config import Settings
from tests.analytics.marts import publish
from tests.analytics.world import MARCH, build_world, marts


async def test_builders_see_their_own_sales_and_admins_the_whole_platform(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    world = await build_world(client)
    version = publish(settings.warehouse_dir, marts(world))

    mine = (await client.get(f"/api/marketplace/analytics?{MARCH}", headers=world.ada.headers)).json()
    assert (mine["scope"], mine["builderId"], mine["warehouse"]["version"]) == (
        "builder",
        str(world.ada.id),
        version,
    )
    assert mine["listings"] == {"pendingReview": 0, "active": 1, "held": 1, "delisted": 0}
    [usd] = mine["totals"]
    assert (usd["currency"], usd["completed"], usd["refunded"]) == ("usd", 3, 1)
    assert usd["grossMinor"] == 2 * 1900 + 900
    assert usd["refundedMinor"] == 1900
    assert [(t["title"], t["purchases"]) for t in mine["topListings"]] == [("Copilot", 2), ("Recipes", 1)]
    assert all(t["listingId"] for t in mine["topListings"])
    assert sum(point["purchases"] for point in mine["series"]) == 3

    platform = (await client.get(f"/api/marketplace/analytics?{MARCH}", headers=world.admin.headers)).json()
    assert platform["scope"] == "platform"
    assert {t["currency"]: t["grossMinor"] for t in platform["totals"]} == {"eur": 5000, "usd": 4700}
    assert platform["listings"]["active"] == 2
    one_builder = await client.get(
        f"/api/marketplace/analytics?{MARCH}&builderId={world.grace.id}", headers=world.admin.headers
    )
    assert [t["currency"] for t in one_builder.json()["totals"]] == ["eur"]
    monthly = await client.get(
        f"/api/marketplace/analytics?{MARCH}&granularity=month", headers=world.ada.headers
    )
    assert [(p["periodStart"], p["purchases"]) for p in monthly.json()["series"]] == [("2026-03-01", 3)]

    # A builder cannot look at another builder's numbers; end users have none to see.
    other = await client.get(
        f"/api/marketplace/analytics?builderId={world.grace.id}", headers=world.ada.headers
    )
    assert other.status_code == 404
    shop = await client.get("/api/marketplace/analytics", headers=world.shop1.headers)
    assert shop.status_code == 403
    april = await client.get(
        "/api/marketplace/analytics?from=2026-04-01&to=2026-04-30", headers=world.ada.headers
    )
    assert [t["completed"] for t in april.json()["totals"]] == [1]
    later = await client.get(
        "/api/marketplace/analytics?from=2099-01-01&to=2099-01-31", headers=world.ada.headers
    )
    assert later.json()["totals"] == []
    backwards = await client.get(
        "/api/marketplace/analytics?from=2030-01-02&to=2030-01-01", headers=world.ada.headers
    )
    assert backwards.status_code == 422
    assert backwards.json()["error"]["code"] == "invalid_period"


async def test_before_the_first_publish_marketplace_analytics_are_zeros(client: httpx.AsyncClient) -> None:
    world = await build_world(client)

    body = (await client.get("/api/marketplace/analytics", headers=world.ada.headers)).json()

    assert body["warehouse"] is None
    assert body["listings"] == {"pendingReview": 0, "active": 0, "held": 0, "delisted": 0}
    assert (body["totals"], body["topListings"], body["series"]) == ([], [], [])
