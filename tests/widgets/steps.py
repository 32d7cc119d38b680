"""The widget journey's steps through the real API: a builder's listed project, an end user who
bought it, a widget generated for it, a visitor's session on an allowed page."""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import httpx
from sqlalchemy import select, update

from app.core.db import commit, sessionmaker
from app.core.principal import Principal
from app.marketplace.schemas import ListingStatusUpdate
from app.marketplace.service import marketplace_service
from app.models import Plan
from app.widgets.security import identity_signature
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


def signed_identity(
    widget: dict[str, Any], user_id: str, *, expires_in: int = 3600, secret: str | None = None
) -> dict[str, Any]:
    """What the host site's server signs for its signed-in ``user_id``: valid for
    ``expires_in`` seconds from now (negative: expired), with the widget's secret key (or
    ``secret``)."""
    expires = int(time.time()) + expires_in
    key = secret or widget["secretKey"]
    signature = identity_signature(key, widget["id"], user_id, expires)
    return {"userId": user_id, "exp": expires, "signature": signature}


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


@asynccontextmanager
async def widget_quota_of_every_plan(messages: int | None) -> AsyncIterator[None]:
    """Arrange: every plan's ``widgetMessagesPerMonth`` is ``messages`` (None: no such limit;
    plans are reference data, kept between tests: restored afterwards)."""
    async with sessionmaker()() as db:
        before = {plan.code: dict(plan.limits) for plan in (await db.execute(select(Plan))).scalars()}
        for code, limits in before.items():
            changed = {**limits, "widgetMessagesPerMonth": messages}
            if messages is None:
                del changed["widgetMessagesPerMonth"]
            await db.execute(update(Plan).where(Plan.code == code).values(limits=changed))
        await db.commit()
    try:
        yield
    finally:
        async with sessionmaker()() as db:
            for code, limits in before.items():
                await db.execute(update(Plan).where(Plan.code == code).values(limits=limits))
            await db.commit()
