"""The usage stream consumer: Redis Stream ``<REDIS_PREFIX><USAGE_STREAM>`` -> ``landing/usage``.

One consumer group (``landing``) shares the stream between however many consumers run (one per
worker process, named host-pid). A consumer reads batches (``XREADGROUP``), lands each as one
durable Parquet file and only then acknowledges and deletes its entries (``XACK`` + ``XDEL`` in
one ``MULTI``), so the stream holds only what is not landed yet. An entry delivered to a
consumer that died stays pending in the group; every consumer reclaims entries pending longer
than ``LANDING_CLAIM_IDLE_SECONDS`` (``XAUTOCLAIM``) when it starts and then periodically.

A crash anywhere before the acknowledgement lands the batch again later: at-least-once, and dbt
deduplicates on ``event_id``. An entry that is not a valid beacon is written to
``warehouse/rejected/usage/`` with the reason, then acknowledged: it cannot block the stream.
"""

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import ResponseError

from app.core.config import Settings, get_settings
from app.core.logging import configure_logging
from app.core.usage import STREAM_FIELD, UsageBeacon
from app.core.warehouse_layout import WarehouseLayout
from app.worker.landing import land_frame, sweep_stale_temporaries, usage_frame, write_rejected

logger = logging.getLogger("bazaar.usage_consumer")

GROUP = "landing"
# A consumer with nothing pending that has not been seen for this long is gone for good; its
# name is removed from the group so restarts (a new pid each) do not accumulate names.
_FORGET_CONSUMER_AFTER_SECONDS = 3600.0
_RETRY_SECONDS = 1.0

StreamEntry = tuple[bytes, dict[bytes, bytes]]


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def consumer_redis(settings: Settings) -> aioredis.Redis:
    """A client for the consumer: its blocking reads need a socket timeout above the block time."""
    if settings.redis_url is None:
        raise RuntimeError("the usage consumer needs REDIS_URL")
    return aioredis.Redis.from_url(
        settings.redis_url, socket_timeout=settings.landing_flush_seconds + 10, socket_connect_timeout=5
    )


_DELETE_IF_NOTHING_PENDING = """
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #pending == 0 then
    return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
"""


@dataclass
class ConsumerStats:
    landed: int = 0
    rejected: int = 0
    files: int = 0
    reclaimed: int = 0


class UsageConsumer:
    def __init__(
        self, redis: aioredis.Redis, settings: Settings, *, name: str | None = None, write_files: bool = True
    ) -> None:
        self.redis = redis
        self.stream = settings.redis_prefix + settings.usage_stream
        self.name = name or consumer_name()
        self.layout = WarehouseLayout(settings.warehouse_dir)
        self.batch_size = settings.landing_batch_size
        self.flush_seconds = settings.landing_flush_seconds
        self.claim_idle_seconds = settings.landing_claim_idle_seconds
        # Only bench/landing.py turns this off, to measure the stream without the Parquet writes.
        self.write_files = write_files
        self.stats = ConsumerStats()

    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def reclaim_stale(self) -> int:
        """Land the entries other (dead) consumers left pending; return how many were taken over."""
        cursor: bytes | str = "0-0"
        taken = 0
        min_idle_ms = int(self.claim_idle_seconds * 1000)
        while True:
            reply = await self.redis.xautoclaim(
                self.stream, GROUP, self.name, min_idle_ms, start_id=cursor, count=self.batch_size
            )
            cursor, claimed = reply[0], reply[1]
            # Redis 7 lists ids whose entries were deleted apart; 6.2 returns them with no fields.
            deleted = [*(reply[2] if len(reply) > 2 else []), *(i for i, f in claimed if f is None)]
            entries = [(i, f) for i, f in claimed if f is not None]
            if deleted:
                # Pending ids whose entries no longer exist cannot be landed: clear them.
                await self.redis.xack(self.stream, GROUP, *deleted)
            if entries:
                taken += len(entries)
                await self.land_and_ack(entries)
            if cursor in (b"0-0", "0-0"):
                break
        if taken:
            self.stats.reclaimed += taken
            logger.info("reclaimed pending usage entries", extra={"count": taken, "consumer": self.name})
        await self._forget_gone_consumers()
        return taken

    async def land_and_ack(self, entries: Sequence[StreamEntry]) -> None:
        """Land ``entries`` durably, then acknowledge and delete them."""
        beacons: list[UsageBeacon] = []
        rejected: list[dict[str, Any]] = []
        for entry_id, fields in entries:
            raw = fields.get(STREAM_FIELD.encode())
            try:
                if raw is None:
                    raise ValueError(f"no field {STREAM_FIELD!r}")
                beacons.append(UsageBeacon.model_validate_json(raw))
            except (ValidationError, ValueError) as exc:
                rejected.append(
                    {
                        "stream_id": entry_id.decode(),
                        "fields": {
                            k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()
                        },
                        "error": str(exc),
                    }
                )
        landed_at = datetime.now(UTC)
        if self.write_files:
            await asyncio.to_thread(self._write, beacons, rejected, landed_at)
        ids = [entry_id for entry_id, _ in entries]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, GROUP, *ids)
            pipe.xdel(self.stream, *ids)
            await pipe.execute()
        self.stats.landed += len(beacons)
        self.stats.rejected += len(rejected)
        if rejected:
            logger.warning("malformed usage entries set aside", extra={"count": len(rejected)})

    def _write(self, beacons: list[UsageBeacon], rejected: list[dict[str, Any]], landed_at: datetime) -> None:
        if beacons:
            land_frame(self.layout, "usage", usage_frame(beacons), landed_at)
            self.stats.files += 1
        write_rejected(self.layout, "usage", rejected, landed_at)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is landed before returning."""
        logger.info("usage consumer starting", extra={"consumer": self.name, "stream": self.stream})
        await asyncio.to_thread(sweep_stale_temporaries, self.layout)
        buffer: dict[bytes, dict[bytes, bytes]] = {}
        started = False
        next_reclaim = 0.0
        deadline = 0.0
        while not stop.is_set():
            try:
                if not started:
                    await self.ensure_group()
                    started = True
                if not buffer and time.monotonic() >= next_reclaim:
                    await self.reclaim_stale()
                    next_reclaim = time.monotonic() + self.claim_idle_seconds
                wait = self.flush_seconds if not buffer else deadline - time.monotonic()
                if wait > 0:
                    # RESP2 (the client's default protocol): [[stream, entries]].
                    reply = cast(
                        list[tuple[bytes, list[StreamEntry]]],
                        await self.redis.xreadgroup(
                            GROUP,
                            self.name,
                            {self.stream: ">"},
                            count=self.batch_size - len(buffer),
                            # BLOCK 0 would mean forever.
                            block=max(1, int(wait * 1000)),
                        ),
                    )
                    for _stream, entries in reply or []:
                        if entries and not buffer:
                            deadline = time.monotonic() + self.flush_seconds
                        buffer.update(entries)
                if buffer and (len(buffer) >= self.batch_size or time.monotonic() >= deadline):
                    batch, buffer = list(buffer.items()), {}
                    await self.land_and_ack(batch)
            except Exception:
                # Redis restarting or the disk failing: what was read stays pending under this
                # consumer's name and is reclaimed once it has been idle long enough.
                logger.exception("usage consumer failed a batch; retrying")
                buffer = {}
                started = False
                await _sleep_unless(stop, _RETRY_SECONDS)
        if buffer:
            try:
                await self.land_and_ack(list(buffer.items()))
            except Exception:
                logger.exception("usage consumer could not land its last batch; it will be reclaimed")
        logger.info("usage consumer stopped", extra={"consumer": self.name, **vars(self.stats)})

    async def _forget_gone_consumers(self) -> None:
        consumers = await self.redis.xinfo_consumers(self.stream, GROUP)
        for consumer in consumers:
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            if (
                name != self.name
                and consumer["pending"] == 0
                and consumer["idle"] > _FORGET_CONSUMER_AFTER_SECONDS * 1000
            ):
                # Checked again inside Redis: a consumer that read a batch since XINFO keeps its
                # pending entries (deleting it would orphan them beyond XAUTOCLAIM's reach).
                await self.redis.eval(_DELETE_IF_NOTHING_PENDING, 1, self.stream, GROUP, name)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def run_consumer_alone(settings: Settings) -> ConsumerStats:
    """``bazaar consume-usage``: the consumer without the rest of the worker, until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    redis = consumer_redis(settings)
    try:
        consumer = UsageConsumer(redis, settings)
        await consumer.run(stop)
        return consumer.stats
    finally:
        await redis.aclose()


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    asyncio.run(run_consumer_alone(settings))


if __name__ == "__main__":
    main()
