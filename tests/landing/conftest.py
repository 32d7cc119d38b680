"""Helpers of the landing tests: beacons, the usage stream of the test's Redis prefix, and reading
landed Parquet back with DuckDB the way dbt's sources do (``<stream>/*/*.parquet``, hive)."""

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import redis.asyncio as aioredis

from app.core.config import Settings
from app.core.usage import UsageBeacon

_serial = itertools.count()


def make_beacon(**changes: Any) -> UsageBeacon:
    fields: dict[str, Any] = {
        "event_id": f"ev-{uuid.uuid4().hex}",
        "widget_id": "0b0e6f5e-6a1c-4c55-9d1e-000000000001",
        "project_id": "0b0e6f5e-6a1c-4c55-9d1e-000000000002",
        "end_user_id": "0b0e6f5e-6a1c-4c55-9d1e-000000000003",
        "visitor_id": f"visitor-{next(_serial)}",
        "session_id": "session-1",
        "kind": "message",
        "count": 1,
        "latency_ms": 420,
        "client_ts": datetime.now(UTC) - timedelta(seconds=2),
    }
    return UsageBeacon(**{**fields, **changes})


def landed(
    warehouse: Path, stream: str, sql: str = "SELECT * FROM landed ORDER BY event_id"
) -> list[tuple[Any, ...]]:
    """Run ``sql`` over every landed file of ``stream`` (as the view ``landed``)."""
    files = sorted((warehouse / "landing" / stream).glob("*/*.parquet"))
    if not files:
        return []
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        paths = ", ".join(f"'{f}'" for f in files)
        con.execute(f"CREATE VIEW landed AS SELECT * FROM read_parquet([{paths}], hive_partitioning = true)")
        return con.execute(sql).fetchall()


def landed_ids(warehouse: Path, stream: str) -> list[str]:
    return [row[0] for row in landed(warehouse, stream, "SELECT event_id FROM landed")]


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
def landing_settings(make_settings: Callable[..., Settings]) -> Settings:
    """Small batches and short waits so a test sees several files and reclaims in milliseconds."""
    return make_settings(landing_batch_size=100, landing_flush_seconds=0.1, landing_claim_idle_seconds=0.3)


@pytest.fixture
async def stream_redis(landing_settings: Settings) -> AsyncIterator[aioredis.Redis]:
    """A client on the test's Redis; the usage stream of the test's prefix is empty before and after."""
    if landing_settings.redis_url is None:
        pytest.skip("needs Redis")
    client = aioredis.Redis.from_url(landing_settings.redis_url)
    stream = landing_settings.redis_prefix + landing_settings.usage_stream
    await client.delete(stream)
    yield client
    await client.delete(stream)
    await client.aclose()
