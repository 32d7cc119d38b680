"""The analytics journey: what happened through the API is what the analytics endpoints say.

Builders and end users sign up, publish, buy; an administrator refunds a sale and pays the
builders out; widgets send usage beacons to the real Redis Stream. The outbox relay and the
stream consumer land everything, Dagster materializes the warehouse (compaction, dbt build with
its tests, publish), and the analytics endpoints, reading the published marts, agree with the
ledger in Postgres to the cent and with what was sent, count for count. Running the pipeline
again, and landing every file twice, changes no number.

The real dbt project runs three times here: this is the suite's slowest test.
"""

import asyncio
import shutil
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import dagster as dg
import httpx
import pytest
import redis.asyncio as aioredis
from sqlalchemy import text

from app.core.config import Settings
from app.core.db import sessionmaker
from app.core.usage import UsageBeacon, publish_usage
from app.core.warehouse_layout import WarehouseLayout
from app.worker.relay import relay_batch
from app.worker.usage_consumer import UsageConsumer
from pipelines.assets import landing, served_marts, warehouse_models
from pipelines.dbt_project import dbt_cli_resource
from pipelines.resources import WarehouseResource
from tests.factories import PASSWORD, Account, login, signed_in, unique_email
from tests.revenue.journey import buy, distribute, published_project, refund


@pytest.fixture
def settings_changes() -> dict[str, Any]:
    # Payouts right away, so the journey can pay the builders it has just sold for.
    return {"payout_settlement_delay_days": 0, "payout_minimum_minor": 100}


async def sign_up(client: httpx.AsyncClient, persona: str) -> Account:
    email = unique_email(persona.replace("_", ""))
    response = await client.post(
        "/api/users",
        json={"email": email, "password": PASSWORD, "name": f"{persona} {email}", "persona": persona},
    )
    assert response.status_code == 201, response.text
    tokens = await login(client, email)
    user = tokens["user"]
    return Account(
        id=UUID(user["id"]),
        email=email,
        persona=persona,
        access_token=tokens["accessToken"],
        refresh_token=tokens["refreshToken"],
        personas=user["personas"],
    )


def beacons_for(
    widget_id: UUID, project_id: UUID, end_user: UUID, *, visitors: int, messages: int, tokens: int
) -> list[UsageBeacon]:
    """One impression and one open per visitor, then ``messages`` messages spread over them and
    their tokens."""

    def beacon(kind: str, visitor: int, count: int = 1) -> UsageBeacon:
        return UsageBeacon(
            event_id=uuid4().hex,
            widget_id=str(widget_id),
            project_id=str(project_id),
            end_user_id=str(end_user),
            visitor_id=f"visitor-{widget_id.hex[:6]}-{visitor}",
            session_id=f"session-{widget_id.hex[:6]}-{visitor}",
            kind=kind,  # type: ignore[arg-type]
            count=count,
            latency_ms=120,
        )

    sent = [beacon(kind, v) for v in range(visitors) for kind in ("impression", "open")]
    sent += [beacon("message", m % visitors) for m in range(messages)]
    sent.append(beacon("tokens", 0, tokens))
    return sent


async def land_everything(settings: Settings, redis: aioredis.Redis) -> None:
    """What the worker does continuously: relay the outbox, consume the stream, until both are empty."""
    layout = WarehouseLayout(settings.warehouse_dir)
    while await relay_batch(sessionmaker(), layout, settings.landing_batch_size):
        pass
    consumer = UsageConsumer(redis, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    stream = settings.redis_prefix + settings.usage_stream
    for _ in range(200):
        await asyncio.sleep(0.05)
        if consumer.stats.landed and await redis.xlen(stream) == 0:
            break
    stop.set()
    await task


def run_pipeline(settings: Settings) -> None:
    result = dg.materialize(
        [landing, warehouse_models, served_marts],
        resources={
            "warehouse": WarehouseResource(
                root=str(settings.warehouse_dir),
                keep_versions=settings.warehouse_keep_versions,
                settle_seconds=0,
            ),
            "dbt": dbt_cli_resource(),
        },
    )
    assert result.success


async def ledger_sum(where: str, **params: Any) -> int:
    async with sessionmaker()() as db:
        value = await db.execute(
            text(
                "SELECT coalesce(sum(e.amount_minor), 0) FROM ledger_entries e "
                f"JOIN ledger_transactions t ON t.id = e.transaction_id WHERE {where}"
            ),
            params,
        )
        return int(value.scalar_one())


async def scalar(sql: str, **params: Any) -> int:
    async with sessionmaker()() as db:
        return int((await db.execute(text(sql), params)).scalar_one())


async def get(client: httpx.AsyncClient, account: Account, path: str) -> dict[str, Any]:
    response = await client.get(path, headers=account.headers)
    assert response.status_code == 200, response.text
    body = dict(response.json())
    assert body["warehouse"] is not None, "answered before anything was published"
    return body


def without_version(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "warehouse"}


async def test_analytics_agree_with_the_ledger_and_with_what_was_sent(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    assert settings.redis_url is not None, "the journey sends beacons through the Redis Stream"
    admin = await signed_in(client, "super_admin")
    alice, bob = await sign_up(client, "builder"), await sign_up(client, "builder")
    carol, dave, erin = [await sign_up(client, "end_user") for _ in range(3)]

    alpha = await published_project(client, alice, price=1900, name="Alpha")
    beta = await published_project(client, bob, price=4900, name="Beta")
    await buy(client, alpha, carol)
    refunded = await buy(client, alpha, dave)
    await buy(client, beta, erin)
    await buy(client, beta, carol)
    await refund(client, admin, refunded["id"])
    payout_run = await distribute(client, admin)
    assert payout_run.status_code == 200, payout_run.text

    carols_widget, erins_widget = uuid4(), uuid4()
    sent = beacons_for(carols_widget, alpha, carol.id, visitors=3, messages=7, tokens=900)
    sent += beacons_for(erins_widget, beta, erin.id, visitors=1, messages=2, tokens=150)
    redis = aioredis.Redis.from_url(settings.redis_url)
    try:
        await publish_usage(sent, settings=settings, redis=redis)
        # A browser retrying a beacon: the same event id twice must count once.
        await publish_usage(sent[-3:], settings=settings, redis=redis)
        await land_everything(settings, redis)
    finally:
        await redis.aclose()
    await asyncio.to_thread(run_pipeline, settings)

    today = datetime.now(UTC).date().isoformat()
    window = f"from={today}&to={today}"
    platform = await get(client, admin, f"/api/analytics/platform?{window}")
    kpis = platform["kpis"]

    # Money, against the ledger.
    gmv = await ledger_sum("t.kind = 'settlement' AND e.leg = 'gross'")
    assert kpis["gmvMinor"] == gmv == 1900 * 2 + 4900 * 2
    assert kpis["refundedMinor"] == -(await ledger_sum("t.kind = 'refund' AND e.leg = 'gross'")) == 1900
    assert kpis["platformFeesMinor"] == -(await ledger_sum("e.account = 'platform:revenue'"))
    assert kpis["netRevenueMinor"] == -(
        await ledger_sum(
            "e.account IN ('platform:revenue', 'platform:billing_revenue', 'platform:fee_expense')"
        )
    )
    paid_out = await scalar("SELECT coalesce(sum(amount_minor), 0) FROM payouts WHERE status = 'paid'")
    assert paid_out > 0
    in_transit_cleared = await ledger_sum("t.kind = 'payout_paid' AND e.amount_minor > 0")
    assert kpis["payoutsPaidMinor"] == paid_out == in_transit_cleared

    # Counts, against what was done.
    assert kpis["signups"] == await scalar("SELECT count(*) FROM users")
    assert (kpis["builderSignups"], kpis["endUserSignups"]) == (2, 3)
    assert (kpis["purchases"], kpis["refunds"]) == (4, 1)

    for builder, project in ((alice, alpha), (bob, beta)):
        mine = await get(client, builder, f"/api/analytics/user/{builder.id}?{window}")
        section = mine["builder"]
        payable = f"builder:{builder.id}:payable"
        assert section["revenue"]["netBuilderShareMinor"] == -(
            await ledger_sum("e.account = :a AND t.kind IN ('settlement', 'refund')", a=payable)
        )
        assert section["payouts"]["paidMinor"] == await scalar(
            "SELECT coalesce(sum(amount_minor), 0) FROM payouts WHERE status = 'paid' AND builder_id = :b",
            b=builder.id,
        )
        project_view = await get(client, builder, f"/api/analytics/projects/{project}?{window}")
        assert project_view["revenue"]["grossMinor"] == await ledger_sum(
            "t.kind = 'settlement' AND e.leg = 'gross' AND e.project_id = :p", p=project
        )
    alpha_view = await get(client, alice, f"/api/projects/{alpha}/analytics?{window}")
    assert (alpha_view["revenue"]["sales"], alpha_view["revenue"]["refunds"]) == (2, 1)
    assert alpha_view["usage"] == {"impressions": 3, "opens": 3, "messages": 7, "tokens": 900}

    # Usage, against what the widgets sent (the replayed beacons once).
    widget = await get(client, carol, f"/api/analytics/widgets/{carols_widget}?{window}")
    assert widget["usage"]["messages"] == 7
    [day] = widget["series"]
    assert (day["visitors"], day["sessions"]) == (3, 3)
    carols = (await get(client, carol, f"/api/users/{carol.id}/analytics?{window}"))["endUser"]
    assert carols["spend"]["spendMinor"] == 1900 + 4900
    assert carols["quota"]["usedThisMonth"] == 7
    assert carols["quota"]["remaining"] == carols["quota"]["monthlyMessages"] - 7

    boards = platform["leaderboards"]
    assert [e["id"] for e in boards["buildersByRevenue"]] == [str(bob.id), str(alice.id)]
    assert [e["value"] for e in boards["buildersByRevenue"]] == [4900 * 2, 1900]
    assert [e["id"] for e in boards["widgetsByUsage"]] == [str(carols_widget), str(erins_widget)]

    revenue = await get(client, admin, f"/api/analytics/revenue?{window}")
    assert revenue["totals"]["grossMinor"] == gmv
    usage = await get(client, admin, f"/api/analytics/usage?{window}")
    assert usage["totals"]["messages"] == 7 + 2

    paths = [
        f"/api/analytics/platform?{window}&granularity=week",
        f"/api/analytics/revenue?{window}",
        f"/api/analytics/usage?{window}",
        f"/api/analytics/user/{alice.id}?{window}",
        f"/api/marketplace/analytics?{window}",
    ]
    before = [without_version(await get(client, admin, p)) for p in paths]
    first_version = platform["warehouse"]["version"]

    # A rerun on the same landing files publishes a new version with the same numbers; the API
    # keeps answering from the old version while it runs, and does not hold the run up.
    pipeline = asyncio.create_task(asyncio.to_thread(run_pipeline, settings))
    answered_during_run = []
    while not pipeline.done():
        response = await client.get(paths[0], headers=admin.headers)
        answered_during_run.append(response.status_code)
        await asyncio.sleep(0.05)
    await pipeline
    assert len(answered_during_run) > 10
    assert set(answered_during_run) == {200}
    rerun = [await get(client, admin, p) for p in paths]
    assert rerun[0]["warehouse"]["version"] != first_version
    assert [without_version(body) for body in rerun] == before

    # ...and so does every landing file landed a second time (at-least-once delivery).
    landing_dir = WarehouseLayout(settings.warehouse_dir).landing
    for part in list(landing_dir.rglob("*.parquet")):
        shutil.copy(part, part.with_name(f"part-again-{part.name.removeprefix('part-')}"))
    await asyncio.to_thread(run_pipeline, settings)
    assert [without_version(await get(client, admin, p)) for p in paths] == before
