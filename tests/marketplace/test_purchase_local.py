"""The publishing and purchase journey on the local provider, end to end: a builder publishes,
an end user finds the listing and buys it, the sale is split, posted and invoiced, and a retry
changes nothing. The details of each step are in test_listings.py and test_purchases.py."""

import httpx

from tests.factories import events_of, signed_in
from tests.marketplace.steps import balances, buy, error_code, listed_project, unbalanced_transactions


async def test_end_user_finds_buys_and_owns_a_listing_and_the_sale_is_split_and_invoiced(
    client: httpx.AsyncClient,
) -> None:
    builder = await signed_in(client, "builder")
    buyer = await signed_in(client, "end_user")
    project = await listed_project(client, builder, name="Support Copilot", priceMinor=1900)

    found = await client.get("/api/marketplace/projects?q=support", headers=buyer.headers)
    [listing] = found.json()["items"]
    assert (listing["projectId"], listing["status"]) == (str(project), "active")

    purchase = await buy(client, buyer, project, key="k1")
    assert (purchase["status"], purchase["amountMinor"]) == ("completed", 1900)

    completed = (await events_of("purchase.completed"))[0]["payload"]
    assert completed["grossMinor"] == 1900
    assert completed["processorFeeMinor"] == 85  # 2.9% of 1900 = 55.1 -> 55, + 30
    assert completed["platformFeeMinor"] == 380  # the free plan's 20%
    assert completed["builderShareMinor"] == 1900 - 85 - 380
    assert await balances() == {
        "platform:cash": 1900 - 85,
        "platform:revenue": -380,
        f"builder:{builder.id}:payable": -(1900 - 85 - 380),
    }
    assert await unbalanced_transactions() == []
    assert [e["type"] for e in await events_of("invoice.")] == ["invoice.issued", "invoice.paid"]

    again = await buy(client, buyer, project, key="k1", expect=200)
    assert again["id"] == purchase["id"]
    other_key = await client.post(
        "/api/marketplace/purchase",
        json={"projectId": str(project)},
        headers={**buyer.headers, "Idempotency-Key": "k2"},
    )
    assert other_key.status_code == 409
    assert error_code(other_key) == "already_purchased"
    mine = await client.get(f"/api/marketplace/purchases/user/{buyer.id}", headers=buyer.headers)
    assert [p["id"] for p in mine.json()["items"]] == [purchase["id"]]
    detail = await client.get(f"/api/marketplace/projects/{project}")
    assert detail.json()["purchaseCount"] == 1
