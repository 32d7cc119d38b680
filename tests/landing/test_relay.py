import asyncio
import json
from uuid import uuid4

import pytest
from sqlalchemy import func, select

from app.core.config import Settings
from app.core.db import sessionmaker
from app.core.events import record_event
from app.core.usage import publish_usage
from app.core.warehouse_layout import WarehouseLayout
from app.models import OutboxEvent
from app.worker import relay
from app.worker.relay import relay_batch, run_relay
from tests.landing.conftest import eventually, landed, landed_ids, make_beacon


async def record_domain_events(count: int) -> list[str]:
    async with sessionmaker()() as db:
        events = [
            await record_event(
                db, "project.created", actor_id=uuid4(), subject_id=f"p-{i}", payload={"name": f"Project {i}"}
            )
            for i in range(count)
        ]
        await db.commit()
    return [str(event.event_id) for event in events]


async def unrelayed() -> int:
    async with sessionmaker()() as db:
        query = select(func.count()).select_from(OutboxEvent).where(OutboxEvent.relayed_at.is_(None))
        return (await db.execute(query)).scalar_one()


async def test_the_relay_lands_every_domain_event_once_and_marks_it_relayed(app, settings: Settings) -> None:
    layout = WarehouseLayout(settings.warehouse_dir)
    ids = await record_domain_events(7)

    assert await relay_batch(sessionmaker(), layout, batch_size=5) == 5
    assert await relay_batch(sessionmaker(), layout, batch_size=5) == 2
    assert await relay_batch(sessionmaker(), layout, batch_size=5) == 0

    rows = landed(settings.warehouse_dir, "events", "SELECT event_id, type, subject_id, payload FROM landed")
    assert sorted(row[0] for row in rows) == sorted(ids)
    assert {row[1] for row in rows} == {"project.created"}
    assert {row[2]: json.loads(row[3]) for row in rows}["p-3"] == {"name": "Project 3"}
    assert await unrelayed() == 0
    assert len(list((settings.warehouse_dir / "landing" / "events").glob("*/*.parquet"))) == 2


async def test_a_crash_between_landing_and_marking_lands_duplicates_but_loses_nothing(
    app, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = WarehouseLayout(settings.warehouse_dir)
    ids = await record_domain_events(10)

    async def crash(*_: object) -> None:
        raise ConnectionError("worker lost Postgres after the file was durable")

    with monkeypatch.context() as patch:
        patch.setattr(relay, "_mark_relayed", crash)
        with pytest.raises(ConnectionError):
            await relay_batch(sessionmaker(), layout, batch_size=100)
    assert sorted(landed_ids(settings.warehouse_dir, "events")) == sorted(ids)
    assert await unrelayed() == 10

    assert await relay_batch(sessionmaker(), layout, batch_size=100) == 10

    landed_now = landed_ids(settings.warehouse_dir, "events")
    assert len(landed_now) == 20
    assert set(landed_now) == set(ids)
    assert await unrelayed() == 0


async def test_two_relays_at_once_never_land_the_same_event_twice(app, settings: Settings) -> None:
    layout = WarehouseLayout(settings.warehouse_dir)
    ids = await record_domain_events(300)

    async def drain() -> None:
        while await relay_batch(sessionmaker(), layout, batch_size=20):
            pass

    await asyncio.gather(drain(), drain())

    landed_now = landed_ids(settings.warehouse_dir, "events")
    assert sorted(landed_now) == sorted(ids)


async def test_embedded_beacons_go_from_the_outbox_to_landing_usage(app, settings: Settings) -> None:
    beacons = [make_beacon(), make_beacon(kind="impression", latency_ms=None)]
    async with sessionmaker()() as db:
        assert await publish_usage(beacons, settings=settings, redis=None, db=db) == 2
        await record_event(db, "project.created", actor_id=None, subject_id="p-1")
        await db.commit()

    await relay_batch(sessionmaker(), WarehouseLayout(settings.warehouse_dir), batch_size=100)

    usage = landed(
        settings.warehouse_dir, "usage", "SELECT event_id, kind, latency_ms, received_at FROM landed"
    )
    assert sorted(row[0] for row in usage) == sorted(b.event_id for b in beacons)
    assert {row[1] for row in usage} == {"message", "impression"}
    # Stamped by the server when accepted, not the beacon's construction time.
    assert len({row[3] for row in usage}) == 1
    assert [
        row[1] for row in landed(settings.warehouse_dir, "events", "SELECT event_id, type FROM landed")
    ] == ["project.created"]
    assert await unrelayed() == 0


async def test_a_malformed_outbox_beacon_is_set_aside_and_does_not_block_the_relay(
    app, settings: Settings
) -> None:
    good = make_beacon()
    async with sessionmaker()() as db:
        await publish_usage([good], settings=settings, redis=None, db=db)
        await record_event(db, "usage.beacon", actor_id=None, subject_id="w", payload={"event_id": "x"})
        await db.commit()

    await relay_batch(sessionmaker(), WarehouseLayout(settings.warehouse_dir), batch_size=100)

    assert landed_ids(settings.warehouse_dir, "usage") == [good.event_id]
    rejected = list((settings.warehouse_dir / "rejected" / "usage").glob("*/*.jsonl"))
    assert len(rejected) == 1
    assert json.loads(rejected[0].read_text())["payload"] == {"event_id": "x"}
    assert await unrelayed() == 0


async def test_the_relay_loop_lands_new_events_within_the_flush_interval_and_stops_cleanly(
    app, make_settings
) -> None:
    settings = make_settings(landing_flush_seconds=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(run_relay(sessionmaker(), settings, stop))
    try:
        ids = await record_domain_events(3)

        async def all_landed() -> bool:
            return sorted(landed_ids(settings.warehouse_dir, "events")) == sorted(ids)

        await eventually(all_landed, timeout=5)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
