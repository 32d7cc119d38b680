"""Beacon events landed per second by one usage stream consumer (see bench/README.md).

Each round fills the usage stream with the same generated beacons, then times one
``UsageConsumer`` (in this process, as the worker runs it) from start until it has
acknowledged them all. Two modes alternate, order flipped every round:

* ``land``: the real consumer: read, validate, write Parquet (temp name, fsync, rename, fsync
  the folder), then XACK + XDEL;
* ``noland``: the same loop with the file writes turned off: read, validate, XACK + XDEL.

The ratio land/noland is what landing costs on top of moving entries through Redis; the
machine's speed and load mostly divide out of it.
"""

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import redis
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Run as a script, bench/ is not a package: the project root on sys.path makes ``bench.*``.
from app.core.config import Settings  # noqa: E402
from app.worker.usage_consumer import UsageConsumer  # noqa: E402
from bench.generate_usage import generate_usage, stream_beacons  # noqa: E402

PREFIX = f"bazaar-bench-landing-{os.getpid()}:"


async def one_round(settings: Settings, beacons: int, *, write_files: bool) -> dict[str, float]:
    client = aioredis.Redis.from_url(settings.redis_url or "", socket_timeout=30)
    stop = asyncio.Event()
    consumer = UsageConsumer(client, settings, name=f"bench-{os.getpid()}", write_files=write_files)
    started, cpu_started = time.perf_counter(), time.process_time()
    task = asyncio.create_task(consumer.run(stop))
    try:
        while consumer.stats.landed + consumer.stats.rejected < beacons:
            if task.done():
                task.result()
                raise RuntimeError("the consumer stopped early")
            await asyncio.sleep(0.002)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        stop.set()
        await task
        await client.aclose()
    if consumer.stats.rejected:
        raise RuntimeError(f"{consumer.stats.rejected} beacons rejected")
    return {
        "seconds": elapsed,
        "per_second": beacons / elapsed,
        "cpu": cpu / elapsed,
        # On a shared machine the consumer rarely gets a whole core: per CPU-second is steadier.
        "per_cpu_second": beacons / cpu,
        "files": consumer.stats.files,
    }


def empty_stream(redis_url: str, stream: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(stream)
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--beacons", type=int, default=200_000, help="beacons per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=5000, help="LANDING_BATCH_SIZE")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    warehouse = Path(tempfile.mkdtemp(prefix="bazaar-bench-landing-"))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        redis_url=args.redis_url,
        redis_prefix=PREFIX,
        warehouse_dir=warehouse,
        landing_batch_size=args.batch_size,
        landing_flush_seconds=0.2,
        landing_claim_idle_seconds=600,
        log_level="WARNING",
    )
    stream = PREFIX + settings.usage_stream
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} before the run"
    )
    print(f"{args.beacons:,} beacons per round, batch size {args.batch_size}, redis {args.redis_url}")
    frame = generate_usage(args.beacons, days=7, seed=7)
    results: dict[str, list[dict[str, float]]] = {"land": [], "noland": []}
    try:
        for round_number in range(1, args.rounds + 1):
            modes = ["land", "noland"] if round_number % 2 else ["noland", "land"]
            for mode in modes:
                empty_stream(args.redis_url, stream)
                stream_beacons(frame, args.redis_url, stream)
                result = asyncio.run(one_round(settings, args.beacons, write_files=mode == "land"))
                results[mode].append(result)
                print(
                    f"round {round_number} {mode:<7} {result['per_second']:>9,.0f} beacons/s "
                    f"({result['seconds']:.2f} s, {result['files']:.0f} files, cpu {result['cpu']:.2f}; "
                    f"{result['per_cpu_second']:,.0f} per CPU-second)"
                )
    finally:
        empty_stream(args.redis_url, stream)
        parquet_bytes = sum(p.stat().st_size for p in warehouse.rglob("*.parquet"))
        landed_rounds = max(1, len(results["land"]))
        shutil.rmtree(warehouse, ignore_errors=True)

    land = statistics.median(r["per_second"] for r in results["land"])
    noland = statistics.median(r["per_second"] for r in results["noland"])
    print(f"landed (Parquet + fsync)   {land:>9,.0f} beacons/s (median of {args.rounds})")
    print(f"baseline (no files)        {noland:>9,.0f} beacons/s (median of {args.rounds})")
    print(f"ratio land/baseline        {land / noland:.2f}")
    land_cpu = statistics.median(r["per_cpu_second"] for r in results["land"])
    noland_cpu = statistics.median(r["per_cpu_second"] for r in results["noland"])
    print(
        f"per CPU-second             {land_cpu:,.0f} landed, {noland_cpu:,.0f} baseline, "
        f"ratio {land_cpu / noland_cpu:.2f}"
    )
    print(f"Parquet size               {parquet_bytes / (landed_rounds * args.beacons):.1f} bytes per beacon")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} after the run")
    out = ROOT / "bench" / "results" / f"landing-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"args": vars(args), "rounds": results, "land": land, "noland": noland}, indent=2)
    )


if __name__ == "__main__":
    main()
