"""Listing views: reading an active listing's page counts a view (``listing.viewed``), at most
once per viewer, listing and UTC day; the owner and administrators are not counted. The views
reach the warehouse and give the admins' dashboard its view-to-purchase conversion."""

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest

from app.core.cache import build_cache
from app.core.config import Settings
from app.core.db import sessionmaker
from app.core.runtime import runtime
from app.core.warehouse_layout import WarehouseLayout
from app.worker.relay import relay_batch
from pipelines.publish import publish_marts
from tests.factories import Account, events_of, signed_in
from tests.marketplace.steps import buy, listed_project, moderate
from tests.warehouse.conftest import assert_dbt_succeeds

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"}
PHONE = {"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0) Safari/604.1"}


async def view(
    client: httpx.AsyncClient, some_id: UUID, as_: Account | None = None, *, expect: int = 200, **headers: str
) -> httpx.Response:
    """``GET`` a listing's page, signed in as ``as_`` or anonymously."""
    response = await client.get(
        f"/api/marketplace/projects/{some_id}", headers={**(as_.headers if as_ else {}), **headers}
    )
    assert response.status_code == expect, response.text
    return response


async def views() -> list[dict[str, Any]]:
    return await events_of("listing.viewed")


@pytest.mark.parametrize("settings_changes", [{}, {"redis_url": None}], ids=["redis", "in_process"])
async def test_a_viewer_counts_once_per_listing_and_day(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    shopper = await signed_in(client, "end_user")
    copilot = await listed_project(client, builder, name="Copilot")
    recipes = await listed_project(client, builder, name="Recipes")

    listing = (await view(client, copilot, shopper)).json()
    await view(client, copilot, shopper)
    await view(client, UUID(listing["id"]), shopper)  # the same listing by its own id
    other = (await view(client, recipes, shopper)).json()
    await view(client, copilot, **BROWSER)
    await view(client, copilot, **BROWSER)
    await view(client, copilot, **PHONE)  # another device behind the same address

    recorded = await views()
    today = datetime.now(UTC).date().isoformat()
    by_viewer = Counter(
        (e["subject_id"], e["payload"]["viewerId"], e["payload"]["anonymous"]) for e in recorded
    )
    assert by_viewer == {
        (listing["id"], str(shopper.id), False): 1,
        (listing["id"], None, True): 2,  # the browser and the phone
        (other["id"], str(shopper.id), False): 1,
    }
    signed = next(e for e in recorded if e["subject_id"] == listing["id"] and not e["payload"]["anonymous"])
    assert signed["actor_id"] == shopper.id
    assert signed["payload"] == {
        "listingId": listing["id"],
        "projectId": str(copilot),
        "builderId": str(builder.id),
        "viewerId": str(shopper.id),
        "anonymous": False,
        "day": today,
    }
    assert all(e["actor_id"] is None for e in recorded if e["payload"]["anonymous"])


async def test_the_owner_and_administrators_are_not_counted(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    other_builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    copilot = await listed_project(client, builder, name="Copilot")

    await view(client, copilot, builder)
    await view(client, copilot, admin)
    assert await views() == []

    await view(client, copilot, other_builder)  # a builder browsing someone else's listing counts
    assert [e["payload"]["viewerId"] for e in await views()] == [str(other_builder.id)]


async def test_a_listing_not_on_sale_counts_no_view(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    shopper = await signed_in(client, "end_user")
    admin = await signed_in(client, "super_admin")
    copilot = await listed_project(client, builder, name="Copilot")
    await moderate(client, admin, copilot, "held")

    await view(client, copilot, shopper, expect=404)
    await view(client, copilot, expect=404, **BROWSER)
    await view(client, copilot, builder)  # the owner still sees it
    assert await views() == []

    await moderate(client, admin, copilot, "active")
    await view(client, copilot, shopper)
    assert len(await views()) == 1


async def test_the_listing_page_answers_when_redis_is_down(
    client: httpx.AsyncClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    builder = await signed_in(client, "builder")
    copilot = await listed_project(client, builder, name="Copilot")

    # Redis goes away: the running API's cache now talks to a port nobody listens on.
    unreachable = build_cache(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    monkeypatch.setattr(runtime(), "cache", unreachable)
    try:
        response = await view(client, copilot, **BROWSER)
    finally:
        await unreachable.close()
    assert response.json()["title"] == "Copilot"
    # The view could not be deduplicated, so it is dropped, and the log says so.
    assert await views() == []
    assert "listing view not counted" in caplog.text


async def test_platform_analytics_show_listing_views_and_conversion_after_the_pipeline_runs(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    builder = await signed_in(client, "builder")
    shop1 = await signed_in(client, "end_user")
    shop2 = await signed_in(client, "end_user")
    admin = await signed_in(client, "super_admin")
    copilot = await listed_project(client, builder, name="Copilot")

    for _ in range(2):
        await view(client, copilot, shop1)
        await view(client, copilot, **BROWSER)
    await view(client, copilot, shop2)
    await view(client, copilot, **PHONE)
    await view(client, copilot, builder)
    await view(client, copilot, admin)
    await buy(client, shop1, copilot)

    # What the worker and the pipeline do: relay the outbox to landing, build, publish.
    layout = WarehouseLayout(settings.warehouse_dir)
    while await relay_batch(sessionmaker(), layout, settings.landing_batch_size):
        pass
    await asyncio.to_thread(assert_dbt_succeeds, settings.warehouse_dir, "build")
    publish_marts(layout, keep=2)

    today = datetime.now(UTC).date().isoformat()
    response = await client.get(
        f"/api/analytics/platform?from={today}&to={today}&granularity=day", headers=admin.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["warehouse"] is not None
    # Four viewers (two signed in, two anonymous devices), one of whom bought.
    kpis = body["kpis"]
    assert (kpis["listingViews"], kpis["purchases"]) == (4, 1)
    assert kpis["conversionRate"] == pytest.approx(1 / 4)
    assert [(p["periodStart"], p["conversionRate"]) for p in body["series"]] == [(today, pytest.approx(0.25))]
