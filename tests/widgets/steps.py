"""The widget journey's steps through the real API: a builder's listed project, an end user who
bought it, a widget generated for it, a visitor's session on an allowed page."""

from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import httpx

from app.core.db import commit, sessionmaker
from app.core.principal import Principal
from app.marketplace.schemas import ListingStatusUpdate
from app.marketplace.service import marketplace_service
from tests.factories import Account, signed_in
from tests.marketplace.steps import buy, publish, ready_project

SITE = "https://shop.example.com"


@dataclass
class Shop:
    builder: Account
    buyer: Account
    project: UUID
    purchase: str


async def bought_project(client: httpx.AsyncClient, *, llm: str | None = None) -> Shop:
    """A builder's listed project (answered by ``llm``, or the offline model) and an end user
    with a completed purchase of it."""
    builder = await signed_in(client, "builder")
    buyer = await signed_in(client, "end_user")
    fields: dict[str, Any] = {"prompt": "You are the shop's assistant."}
    if llm is not None:
        fields["llm"] = llm
    project = await ready_project(client, builder, name="Support Copilot", **fields)
    await publish(client, builder, project)
    purchase = await buy(client, buyer, project)
    return Shop(builder=builder, buyer=buyer, project=project, purchase=purchase["id"])


async def generate(
    client: httpx.AsyncClient,
    owner: Account,
    project: UUID,
    *,
    expect: int = 201,
    key: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    body = {"projectId": str(project), "allowedOrigins": [SITE], **fields}
    response = await client.post(
        "/api/widgets/generate",
        json=body,
        headers={**owner.headers, "Idempotency-Key": key or str(uuid4())},
    )
    assert response.status_code == expect, response.text
    return dict(response.json())


async def open_session(
    client: httpx.AsyncClient,
    widget: dict[str, Any],
    *,
    origin: str | None = SITE,
    expect: int = 201,
    **fields: Any,
) -> dict[str, Any]:
    headers = {} if origin is None else {"Origin": origin}
    response = await client.post(
        "/widget/v1/session", json={"widgetKey": widget["publicKey"], **fields}, headers=headers
    )
    assert response.status_code == expect, response.text
    return dict(response.json())


def visitor_headers(session: dict[str, Any], origin: str = SITE) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['token']}", "Origin": origin}


async def moderate_as_platform(project_id: UUID, status: str) -> None:
    """Arrange: the platform holds, reactivates or delists a listing."""
    async with sessionmaker()() as db:
        platform = Principal(
            user_id=UUID(int=0),
            session_id=UUID(int=0),
            persona="super_admin",
            personas=("super_admin",),
            permissions=frozenset({"platform:admin"}),
        )
        await marketplace_service.set_status(
            db,
            platform,
            project_id,
            ListingStatusUpdate(status=status, reason="Arranged"),  # type: ignore[arg-type]
        )
        await commit(db)
