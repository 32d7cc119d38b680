"""``bazaar consume-usage``, run as an operator runs it: its own process, stopped with SIGTERM."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.landing.conftest import landed_ids, make_beacon

ROOT = Path(__file__).resolve().parents[2]


def test_consume_usage_lands_the_stream_and_stops_cleanly_on_sigterm(
    redis_url: str | None, redis_prefix: str, tmp_path: Path
) -> None:
    if redis_url is None:
        pytest.skip("needs Redis")
    prefix = f"{redis_prefix}command:"
    beacon = make_beacon()
    client = redis.Redis.from_url(redis_url)
    client.xadd(prefix + "usage", {"b": beacon.model_dump_json()})
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "WAREHOUSE_DIR": str(tmp_path),
        "LANDING_FLUSH_SECONDS": "0.1",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "app", "consume-usage"], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while landed_ids(tmp_path, "usage") != [beacon.event_id]:
            assert time.monotonic() < deadline, "the beacon was not landed"
            assert process.poll() is None, "consume-usage exited"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert client.xlen(prefix + "usage") == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        client.delete(prefix + "usage")
        client.close()


def test_consume_usage_without_redis_says_the_outbox_relay_lands_beacons() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "app", "consume-usage"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "REDIS_URL is not set" in result.stderr
