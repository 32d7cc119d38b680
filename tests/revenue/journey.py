"""Sales through the real API: a builder publishes, buyers buy (and admins refund)."""

from typing import Any
from uuid import UUID, uuid4

import httpx

from tests.factories import Account, create_project, signed_in


async def ready_project(client: httpx.AsyncClient, builder: Account, name: str = "Support Copilot") -> UUID:
    project_id = await create_project(builder, name=name)
    for status in ("in_development", "ready"):
        response = await client.put(
            f"/api/projects/{project_id}/status", json={"status": status}, headers=builder.headers
        )
        assert response.status_code == 200, response.text
    return project_id


async def published_project(
    client: httpx.AsyncClient,
    builder: Account,
    *,
    price: int = 1900,
    currency: str = "usd",
    name: str = "App",
) -> UUID:
    project_id = await ready_project(client, builder, name=name)
    response = await client.post(
        f"/api/marketplace/projects/{project_id}/publish",
        json={"priceMinor": price, "currency": currency, "description": "Helps", "category": "sales"},
        headers=builder.headers,
    )
    assert response.status_code == 201, response.text
    return project_id


async def buy(client: httpx.AsyncClient, project_id: UUID, buyer: Account | None = None) -> dict[str, Any]:
    buyer = buyer or await signed_in(client, "end_user")
    response = await client.post(
        "/api/marketplace/purchase",
        json={"projectId": str(project_id)},
        headers={**buyer.headers, "Idempotency-Key": str(uuid4())},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def sell(client: httpx.AsyncClient, project_id: UUID, times: int) -> list[dict[str, Any]]:
    return [await buy(client, project_id) for _ in range(times)]


async def refund(client: httpx.AsyncClient, admin: Account, purchase_id: str) -> dict[str, Any]:
    response = await client.post(
        f"/api/marketplace/purchases/{purchase_id}/refund", json={"reason": "test"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def distribute(client: httpx.AsyncClient, admin: Account, key: str | None = None, **body: Any) -> Any:
    return await client.post(
        "/api/revenue/distribute",
        json=body or None,
        headers={**admin.headers, "Idempotency-Key": key or str(uuid4())},
    )


# The local provider's fee on 1900 (2.9% + 30, half up) and the free plan's 20% platform fee.
FEE_1900 = 85
PLATFORM_1900 = 380
SHARE_1900 = 1900 - FEE_1900 - PLATFORM_1900
