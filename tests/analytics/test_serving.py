"""Serving published versions while the pipeline publishes new ones: requests never fail, a
superseded version is closed only after its last request, and ``/readyz`` tells how fresh the
served version is."""

import asyncio
import shutil
import threading
from datetime import UTC, datetime, timedelta

import duckdb
import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.core.runtime import runtime
from app.core.warehouse import WarehouseReader
from app.core.warehouse_layout import WarehouseLayout
from tests.analytics.marts import point_current_at, publish, revenue_row, write_version
from tests.analytics.world import MARCH, World, build_world, d, marts
from tests.factories import signed_in


async def test_a_request_holding_a_cursor_keeps_its_version_open_across_a_publish(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    admin = await signed_in(client, "super_admin")
    first = publish(settings.warehouse_dir)
    reader = runtime().warehouse
    started, finish = threading.Event(), threading.Event()

    def slow_query(cur: duckdb.DuckDBPyConnection) -> int:
        started.set()
        finish.wait(timeout=10)  # a long query on the old version, still running
        row = cur.execute("SELECT count(*) FROM marts.revenue_daily").fetchone()
        return int(row[0]) if row else -1

    async with reader.lease() as old:
        assert old is not None
        assert old.version == first
        running = asyncio.create_task(old.run(slow_query))
        await asyncio.to_thread(started.wait, 10)

        second = publish(settings.warehouse_dir)
        response = await client.get("/api/analytics/platform", headers=admin.headers)

        assert response.status_code == 200
        assert response.json()["warehouse"]["version"] == second
        assert old.superseded
        assert not old.closed, "closed under a running query"
        finish.set()
        assert await running == 0
    assert old.closed, "the superseded version is closed once its last request ended"
    assert reader.current is not None
    assert reader.current.version == second
    assert not reader.current.closed


async def test_many_concurrent_requests_during_repeated_publishes_never_fail(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    world: World = await build_world(client)
    layout = WarehouseLayout(settings.warehouse_dir)
    published = [publish(settings.warehouse_dir, marts(world))]
    # dbt holds the build file with a read-write connection during a run; the API must not care.
    layout.build_file.parent.mkdir(parents=True, exist_ok=True)
    build = duckdb.connect(str(layout.build_file))
    stop = threading.Event()

    def pipeline() -> None:
        """Publish again and again, deleting all but the newest two versions like the pruner."""
        sales = 0
        while not stop.is_set() and len(published) < 12:
            sales += 1
            rows = marts(world)
            rows["revenue_daily"].append(
                revenue_row(d("2026-03-20"), world.recipes, world.ada.id, sales=sales, gross=100 * sales)
            )
            published.append(publish(settings.warehouse_dir, rows))
            for old in published[:-2]:
                shutil.rmtree(layout.version_dir(old), ignore_errors=True)

    paths = [
        (f"/api/analytics/platform?{MARCH}", world.admin),
        (f"/api/analytics/projects/{world.recipes}?{MARCH}", world.ada),
        (f"/api/analytics/usage?{MARCH}&granularity=week", world.shop1),
        (f"/api/analytics/user/{world.ada.id}?{MARCH}", world.ada),
        (f"/api/marketplace/analytics?{MARCH}", world.ada),
    ]
    publisher = threading.Thread(target=pipeline)
    publisher.start()
    try:
        responses: list[httpx.Response] = []
        for _ in range(8):
            responses += await asyncio.gather(
                *(client.get(path, headers=who.headers) for path, who in paths * 3)
            )
    finally:
        stop.set()
        await asyncio.to_thread(publisher.join)
        build.close()

    assert [r.status_code for r in responses if r.status_code != 200] == []
    versions = {r.json()["warehouse"]["version"] for r in responses}
    assert versions <= set(published)
    final = await client.get(f"/api/analytics/projects/{world.recipes}?{MARCH}", headers=world.ada.headers)
    assert final.json()["warehouse"]["version"] == published[-1]


async def test_reader_answers_none_before_the_first_publish_and_never_opens_a_deleted_version(
    settings: Settings,
) -> None:
    reader = WarehouseReader(WarehouseLayout(settings.warehouse_dir))
    assert await reader.acquire() is None

    version = publish(settings.warehouse_dir)
    served = await reader.acquire()
    assert served is not None
    assert served.version == version
    reader.release(served)
    # ``current`` pointing at a folder that is gone: keep serving what is open.
    shutil.rmtree(WarehouseLayout(settings.warehouse_dir).version_dir(version))
    async with reader.lease() as still:
        assert still is served
    reader.close()
    assert served.closed


async def test_readyz_reports_the_warehouse_missing_then_ok_then_stale_and_stays_ready(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    missing = await client.get("/readyz")
    assert missing.status_code == 200
    assert missing.json()["warehouse"]["status"] == "missing"
    assert missing.json()["warehouse"]["version"] is None

    fresh = publish(settings.warehouse_dir)
    ok = (await client.get("/readyz")).json()
    assert (ok["status"], ok["warehouse"]["status"], ok["warehouse"]["version"]) == ("ready", "ok", fresh)
    assert ok["warehouse"]["ageSeconds"] < 60

    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    old = publish(settings.warehouse_dir, published_at=an_hour_ago)
    stale = await client.get("/readyz")
    assert stale.status_code == 200
    assert (stale.json()["warehouse"]["status"], stale.json()["warehouse"]["version"]) == ("stale", old)
    assert stale.json()["warehouse"]["ageSeconds"] >= 3600


@pytest.mark.parametrize("settings_changes", [{"analytics_cache_ttl_seconds": 0}])
async def test_without_the_cache_answers_are_the_same(client: httpx.AsyncClient, settings: Settings) -> None:
    world = await build_world(client)
    version = write_version(settings.warehouse_dir, marts(world))

    point_current_at(settings.warehouse_dir, version)

    body = (await client.get(f"/api/analytics/usage?{MARCH}", headers=world.admin.headers)).json()

    assert (body["warehouse"]["version"], body["totals"]["messages"]) == (version, 27)
