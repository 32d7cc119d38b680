"""Sales through the real API: a builder publishes, buyers buy (and admins refund)."""

from typing import Any
from uuid import UUID, uuid4

import httpx

from tests.factories import Account, signed_in
from tests.marketplace import steps


async def published_project(
    client: httpx.AsyncClient,
    builder: Account,
    *,
    price: int = 1900,
    currency: str = "usd",
    name: str = "App",
) -> UUID:
    project_id = await steps.ready_project(client, builder, name=name)
    # No tags: ``tags=[]`` is the API's default, it overrides the ``PUBLISH_BODY``'s.
    await steps.publish(
        client,
        builder,
        project_id,
        priceMinor=price,
        currency=currency,
        description="Helps",
        category="sales",
        tags=[],
    )
    return project_id


async def buy(client: httpx.AsyncClient, project_id: UUID, buyer: Account | None = None) -> dict[str, Any]:
    """``steps.buy`` with the buyer last and optional (a fresh end user by default)."""
    buyer = buyer or await signed_in(client, "end_user")
    return await steps.buy(client, buyer, project_id)


async def sell(client: httpx.AsyncClient, project_id: UUID, times: int) -> list[dict[str, Any]]:
    return [await buy(client, project_id) for _ in range(times)]


async def refund(client: httpx.AsyncClient, admin: Account, purchase_id: str) -> dict[str, Any]:
    return await steps.refund(client, admin, purchase_id, reason="test")


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
