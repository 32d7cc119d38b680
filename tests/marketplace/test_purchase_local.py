"""The purchase flow on the local provider: publish, buy, settle, split, invoice."""

from sqlalchemy import func, select

from app.core.db import sessionmaker
from app.models import LedgerEntry
from tests.factories import create_project, events_of, signed_in


async def ready_project(client, builder, **fields):
    project_id = await create_project(builder, **fields)
    for status in ("in_development", "ready"):
        response = await client.put(
            f"/api/projects/{project_id}/status", json={"status": status}, headers=builder.headers
        )
        assert response.status_code == 200, response.text
    return project_id


async def publish(client, builder, project_id, price=1900, **extra):
    body = {
        "priceMinor": price,
        "currency": "usd",
        "description": "Helps",
        "category": "customer-support",
        **extra,
    }
    response = await client.post(
        f"/api/marketplace/projects/{project_id}/publish", json=body, headers=builder.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_end_user_buys_a_listing_and_the_sale_is_split_and_invoiced(client):
    builder = await signed_in(client, "builder")
    buyer = await signed_in(client, "end_user")
    project_id = await ready_project(client, builder, name="Support Copilot")
    listing = await publish(client, builder, project_id, price=1900)
    assert listing["status"] == "active"

    response = await client.post(
        "/api/marketplace/purchase",
        json={"projectId": str(project_id)},
        headers={**buyer.headers, "Idempotency-Key": "k1"},
    )
    assert response.status_code == 201, response.text
    purchase = response.json()
    assert purchase["status"] == "completed"
    assert purchase["amountMinor"] == 1900

    completed = (await events_of("purchase.completed"))[0]["payload"]
    assert completed["grossMinor"] == 1900
    assert completed["processorFeeMinor"] == 85  # 2.9% of 1900 = 55.1 -> 55, + 30
    assert completed["platformFeeMinor"] == 380
    assert completed["builderShareMinor"] == 1900 - 85 - 380
    async with sessionmaker()() as db:
        total = (await db.execute(select(func.sum(LedgerEntry.amount_minor)))).scalar_one()
    assert total == 0
    assert [e["type"] for e in await events_of("invoice.")] == ["invoice.issued", "invoice.paid"]

    again = await client.post(
        "/api/marketplace/purchase",
        json={"projectId": str(project_id)},
        headers={**buyer.headers, "Idempotency-Key": "k1"},
    )
    assert again.status_code == 200
    assert again.json()["id"] == purchase["id"]
    other_key = await client.post(
        "/api/marketplace/purchase",
        json={"projectId": str(project_id)},
        headers={**buyer.headers, "Idempotency-Key": "k2"},
    )
    assert other_key.status_code == 409
    assert other_key.json()["error"]["code"] == "already_purchased"
