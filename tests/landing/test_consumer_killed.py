"""The fault test of the landing contract: a consumer SIGKILLed at random points while 100k
beacons flow loses none of them. Every kill leaves a batch read but not acknowledged (or a file
renamed but not acknowledged); the restarted consumer reclaims it, so the landing holds
duplicates and the distinct ids are exactly the ones sent."""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import pytest
import redis

from app.worker.usage_consumer import GROUP

ROOT = Path(__file__).resolve().parents[2]
TOTAL = 100_000
KILLS = 4


def produce(client: redis.Redis, stream: str, ids: list[str]) -> None:
    received_at = datetime.now(UTC).isoformat()
    for start in range(0, len(ids), 1000):
        pipe = client.pipeline(transaction=False)
        for event_id in ids[start : start + 1000]:
            beacon = {
                "event_id": event_id,
                "widget_id": "0b0e6f5e-6a1c-4c55-9d1e-0000000000a1",
                "project_id": "0b0e6f5e-6a1c-4c55-9d1e-0000000000b1",
                "end_user_id": "0b0e6f5e-6a1c-4c55-9d1e-0000000000c1",
                "visitor_id": f"v-{event_id[-3:]}",
                "kind": "message",
                "count": 1,
                "received_at": received_at,
            }
            pipe.xadd(stream, {"b": orjson.dumps(beacon)})
        pipe.execute()
        time.sleep(0.02)  # a flow over seconds, not one burst, so kills fall while it arrives


def start_consumer(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "app.worker.usage_consumer"], cwd=ROOT, env=env)


def consumer_names(client: redis.Redis, stream: str) -> dict[str, int]:
    try:
        return {c["name"].decode(): c["pending"] for c in client.xinfo_consumers(stream, GROUP)}
    except redis.ResponseError:  # no stream or group yet
        return {}


def wait_until(condition, timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def wait_for_a_write_in_progress(warehouse: Path, client: redis.Redis, stream: str) -> None:
    """Until a ``.tmp`` landing file exists (polled fast: a write lasts milliseconds), or nothing
    is left to land."""
    folder = warehouse / "landing" / "usage"
    deadline = time.monotonic() + 30
    next_stream_check = 0.0
    while not any(folder.glob("*/*.tmp")):
        now = time.monotonic()
        if now > next_stream_check:
            if client.xlen(stream) == 0:
                return
            next_stream_check = now + 0.05
        if now > deadline:
            raise AssertionError("no file was being written for 30 s")
        time.sleep(0.0005)


def test_a_consumer_killed_at_random_points_loses_none_of_100k_beacons(
    redis_url: str | None, redis_prefix: str, tmp_path: Path
) -> None:
    if redis_url is None:
        pytest.skip("needs Redis")
    seed = int(time.time())
    rng = random.Random(seed)
    prefix = f"{redis_prefix}fault:"
    stream = prefix + "usage"
    warehouse = tmp_path / "warehouse"
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "WAREHOUSE_DIR": str(warehouse),
        "LANDING_BATCH_SIZE": "2000",
        "LANDING_FLUSH_SECONDS": "0.2",
        "LANDING_CLAIM_IDLE_SECONDS": "1",
        "LOG_LEVEL": "ERROR",
    }
    client = redis.Redis.from_url(redis_url)
    client.delete(stream)
    ids = [f"fault-{i:06d}" for i in range(TOTAL)]
    producer = threading.Thread(target=produce, args=(client, stream, ids))
    held_at_kill: list[int] = []
    consumer = start_consumer(env)
    try:
        producer.start()
        for kill in range(KILLS):
            name_suffix = f"-{consumer.pid}"
            wait_until(
                lambda suffix=name_suffix: any(n.endswith(suffix) for n in consumer_names(client, stream)),
                timeout=30,
                what="the consumer to join the group",
            )
            if kill % 2:
                # Aim at the most dangerous moment: a file being written for entries not yet acked.
                wait_for_a_write_in_progress(warehouse, client, stream)
            else:
                time.sleep(rng.uniform(0.05, 1.5))
            consumer.send_signal(signal.SIGKILL)
            consumer.wait()
            held_at_kill.append(
                sum(p for n, p in consumer_names(client, stream).items() if n.endswith(name_suffix))
            )
            consumer = start_consumer(env)
        producer.join()
        wait_until(
            lambda: client.xlen(stream) == 0 and client.xpending(stream, GROUP)["pending"] == 0,
            timeout=45,
            what="the stream to drain",
        )
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=10) == 0
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait()
        producer.join()
        client.delete(stream)
        client.close()

    files = f"read_parquet('{warehouse}/landing/usage/*/*.parquet')"
    with duckdb.connect() as con:
        distinct, rows = con.execute(f"SELECT count(DISTINCT event_id), count(*) FROM {files}").fetchone()
        landed = {row[0] for row in con.execute(f"SELECT DISTINCT event_id FROM {files}").fetchall()}
    note = f"seed {seed}, held at each kill {held_at_kill}, {rows} rows landed"
    assert distinct == TOTAL, note
    assert landed == set(ids), note
    # The kills did interrupt work in flight (else this test would prove nothing about reclaiming).
    assert any(held_at_kill), note
    assert not list((warehouse / "rejected").rglob("*.jsonl")), note
