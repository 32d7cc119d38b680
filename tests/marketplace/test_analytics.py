"""GET /api/marketplace/analytics: what sold, for whom, computed from purchases and listings."""

from tests.factories import signed_in
from tests.marketplace.steps import buy, listed_project, moderate, refund


async def test_builders_see_their_own_sales_and_admins_the_whole_platform(client) -> None:
    ada = await signed_in(client, "builder")
    grace = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    shops = [await signed_in(client, "end_user") for _ in range(3)]
    copilot = await listed_project(client, ada, name="Copilot", priceMinor=1900)
    recipes = await listed_project(client, ada, name="Recipes", priceMinor=900)
    contracts = await listed_project(client, grace, name="Contracts", priceMinor=5000, currency="eur")
    bought = [await buy(client, shop, copilot) for shop in shops]
    await buy(client, shops[0], recipes)
    await buy(client, shops[1], contracts)
    await refund(client, admin, bought[2]["id"])
    await moderate(client, admin, recipes, "held", reason="Reported")

    mine = (await client.get("/api/marketplace/analytics", headers=ada.headers)).json()
    assert mine["scope"] == "builder"
    assert mine["listings"] == {"pendingReview": 0, "active": 1, "held": 1, "delisted": 0}
    [usd] = mine["totals"]
    assert (usd["currency"], usd["completed"], usd["refunded"]) == ("usd", 3, 1)
    assert usd["grossMinor"] == 2 * 1900 + 900
    assert usd["refundedMinor"] == 1900
    assert [(t["title"], t["purchases"]) for t in mine["topListings"]] == [("Copilot", 2), ("Recipes", 1)]
    assert sum(point["purchases"] for point in mine["daily"]) == 3

    platform = (await client.get("/api/marketplace/analytics", headers=admin.headers)).json()
    assert platform["scope"] == "platform"
    assert {t["currency"]: t["grossMinor"] for t in platform["totals"]} == {"eur": 5000, "usd": 4700}
    one_builder = await client.get(f"/api/marketplace/analytics?builderId={grace.id}", headers=admin.headers)
    assert [t["currency"] for t in one_builder.json()["totals"]] == ["eur"]

    # A builder cannot look at another builder's numbers; end users have none to see.
    other = await client.get(f"/api/marketplace/analytics?builderId={grace.id}", headers=ada.headers)
    assert other.status_code == 404
    shop = await client.get("/api/marketplace/analytics", headers=shops[0].headers)
    assert shop.status_code == 403
    later = await client.get("/api/marketplace/analytics?from=2099-01-01T00:00:00Z", headers=ada.headers)
    assert later.json()["totals"] == []
    backwards = await client.get(
        "/api/marketplace/analytics?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z", headers=ada.headers
    )
    assert backwards.status_code == 422
