import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis

from app.core.config import Settings
from app.core.usage import publish_usage
from app.worker.usage_consumer import GROUP, UsageConsumer
from tests.landing.conftest import eventually, landed, landed_ids, make_beacon


def stream_of(settings: Settings) -> str:
    return settings.redis_prefix + settings.usage_stream


@asynccontextmanager
async def running(consumer: UsageConsumer) -> AsyncIterator[UsageConsumer]:
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield consumer
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


async def pending(redis: aioredis.Redis, settings: Settings) -> int:
    return (await redis.xpending(stream_of(settings), GROUP))["pending"]


async def test_the_consumer_lands_beacons_then_acknowledges_and_deletes_them(
    landing_settings: Settings, stream_redis: aioredis.Redis
) -> None:
    beacons = [make_beacon() for _ in range(250)]
    await publish_usage(beacons, settings=landing_settings, redis=stream_redis)

    async with running(UsageConsumer(stream_redis, landing_settings, name="c1")) as consumer:

        async def all_acknowledged() -> bool:
            return await stream_redis.xlen(stream_of(landing_settings)) == 0

        await eventually(all_acknowledged)

    assert sorted(landed_ids(landing_settings.warehouse_dir, "usage")) == sorted(b.event_id for b in beacons)
    assert await pending(stream_redis, landing_settings) == 0
    # Batches of at most LANDING_BATCH_SIZE (100) events per file.
    assert consumer.stats.files == 3
    assert len(list((landing_settings.warehouse_dir / "landing" / "usage").glob("*/*.parquet"))) == 3


async def test_a_beacon_arriving_alone_is_landed_within_the_flush_interval(
    landing_settings: Settings, stream_redis: aioredis.Redis
) -> None:
    async with running(UsageConsumer(stream_redis, landing_settings, name="c1")):
        await asyncio.sleep(0.2)
        beacon = make_beacon()
        await publish_usage([beacon], settings=landing_settings, redis=stream_redis)

        async def landed_it() -> bool:
            return landed_ids(landing_settings.warehouse_dir, "usage") == [beacon.event_id]

        await eventually(landed_it, timeout=landing_settings.landing_flush_seconds + 2)


async def test_nothing_is_acknowledged_while_the_file_cannot_be_written(
    landing_settings: Settings, stream_redis: aioredis.Redis, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the warehouse should be")
    broken = landing_settings.model_copy(update={"warehouse_dir": blocked})
    beacons = [make_beacon() for _ in range(40)]
    await publish_usage(beacons, settings=landing_settings, redis=stream_redis)

    async with running(UsageConsumer(stream_redis, broken, name="c-broken")):

        async def delivered() -> bool:
            info = await stream_redis.xinfo_groups(stream_of(landing_settings))
            return bool(info) and info[0]["pending"] == 40

        await eventually(delivered)
        await asyncio.sleep(0.3)
        assert await stream_redis.xlen(stream_of(landing_settings)) == 40
        assert await pending(stream_redis, landing_settings) == 40

    # Once the disk is back, the entries the failed consumer holds are reclaimed and landed.
    async with running(UsageConsumer(stream_redis, landing_settings, name="c-healthy")):

        async def all_landed() -> bool:
            return sorted(landed_ids(landing_settings.warehouse_dir, "usage")) == sorted(
                b.event_id for b in beacons
            )

        await eventually(all_landed)
    assert await pending(stream_redis, landing_settings) == 0


async def test_entries_a_dead_consumer_was_holding_are_reclaimed_and_landed(
    landing_settings: Settings, stream_redis: aioredis.Redis
) -> None:
    beacons = [make_beacon() for _ in range(150)]
    await publish_usage(beacons, settings=landing_settings, redis=stream_redis)
    stream = stream_of(landing_settings)
    await stream_redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
    # A consumer that read 60 entries and was killed before landing them.
    await stream_redis.xreadgroup(GROUP, "dead-host-4242", {stream: ">"}, count=60)

    async with running(UsageConsumer(stream_redis, landing_settings, name="c-new")) as consumer:

        async def all_landed() -> bool:
            return sorted(landed_ids(landing_settings.warehouse_dir, "usage")) == sorted(
                b.event_id for b in beacons
            )

        await eventually(all_landed)

    assert consumer.stats.reclaimed == 60
    assert await pending(stream_redis, landing_settings) == 0
    assert await stream_redis.xlen(stream) == 0


async def test_malformed_entries_are_set_aside_with_their_reason_and_do_not_block_the_stream(
    landing_settings: Settings, stream_redis: aioredis.Redis
) -> None:
    stream = stream_of(landing_settings)
    good = make_beacon()
    await stream_redis.xadd(stream, {"b": "{not json"})
    await stream_redis.xadd(stream, {"other": "field"})
    await stream_redis.xadd(stream, {"b": make_beacon().model_dump_json().replace('"message"', '"click"')})
    await publish_usage([good], settings=landing_settings, redis=stream_redis)

    async with running(UsageConsumer(stream_redis, landing_settings, name="c1")) as consumer:

        async def drained() -> bool:
            return await stream_redis.xlen(stream) == 0

        await eventually(drained)

    assert landed_ids(landing_settings.warehouse_dir, "usage") == [good.event_id]
    assert consumer.stats.rejected == 3
    lines = [
        json.loads(line)
        for path in (landing_settings.warehouse_dir / "rejected" / "usage").glob("*/*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert sorted(line["fields"].get("b", line["fields"].get("other")) for line in lines)[0] == "field"
    assert all(line["error"] for line in lines)
    assert await pending(stream_redis, landing_settings) == 0


async def test_landed_rows_keep_every_field_of_the_beacon(
    landing_settings: Settings, stream_redis: aioredis.Redis
) -> None:
    beacon = make_beacon(customer_id="cust-9", kind="tokens", count=1234, latency_ms=None)
    await publish_usage([beacon], settings=landing_settings, redis=stream_redis)

    async with running(UsageConsumer(stream_redis, landing_settings, name="c1")):

        async def landed_it() -> bool:
            return bool(landed_ids(landing_settings.warehouse_dir, "usage"))

        await eventually(landed_it)

    columns = list(beacon.model_dump())
    [row] = landed(landing_settings.warehouse_dir, "usage", f"SELECT {', '.join(columns)} FROM landed")
    sent = beacon.model_dump()
    assert dict(zip(columns, row, strict=True)) == {**sent, "received_at": row[columns.index("received_at")]}
