"""Analytics endpoints over a 10M-beacon warehouse at concurrency 16, against a no-op route.

1. lands ``--beacons`` usage beacons and the marketplace's domain events into a temporary
   warehouse and builds it once (``bench/pipeline.py``: ``build_warehouse(full_refresh=True)``),
   or reuses a built one (``--warehouse-dir``);
2. starts the real API twice on a fresh database ``bazaar_bench_analytics`` (migrated; a super
   admin created with ``bazaar create-admin`` and a builder signed up), both with
   ``WAREHOUSE_DIR`` pointing at that warehouse: one with the response cache off
   (``ANALYTICS_CACHE_TTL_SECONDS=0``: every request queries DuckDB) and one with the default
   cache (300 s, in Redis when it answers), plus ``bench/noop_app.py`` as the baseline;
3. checks that both APIs answer both reports with the same bytes (the cached answer is the one
   the marts give), then drives ``GET /api/analytics/platform?from=..&to=..`` and
   ``GET /api/analytics/usage?from=..&to=..`` as the admin on both APIs, ``GET /api/auth/me`` on
   the cached one (for reference: the cheapest authenticated route) and ``GET /noop`` with
   ``wrk -c16`` (or, without wrk, 16 keep-alive connections on asyncio for the same number of
   seconds), in alternating rounds (order rotated every round);
4. prints p50/p99 and requests/s, and each route's throughput as a ratio to the no-op's median
   (target >= 0.5), then stops everything, drops the database and the Redis keys and deletes
   the warehouse it built.

    .venv/bin/python bench/analytics.py                       # builds 10M first (minutes)
    .venv/bin/python bench/analytics.py --beacons 1M          # quicker
    .venv/bin/python bench/analytics.py --warehouse-dir /tmp/wh   # a built warehouse, kept
"""

import argparse
import asyncio
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Run as a script, bench/ is not a package: the project root on sys.path makes ``bench.*``.
from app.core.warehouse_layout import WarehouseLayout  # noqa: E402
from bench.common import (  # noqa: E402
    CpuMeter,
    Measure,
    Target,
    drive_asyncio,
    drive_wrk,
    in_turns,
    load_average,
    log_in,
    print_machine,
    sign_up,
    write_results,
)
from bench.pipeline import human, land_base, parse_size, timed_build  # noqa: E402
from bench.servers import (  # noqa: E402
    api_env,
    bench_database,
    create_admin,
    ensure_running,
    reachable,
    services_answer,
    start_api,
    start_module,
    stopped_at_exit,
    wait_ready,
)

DATABASE = "bazaar_bench_analytics"
REDIS_PREFIX = "bazaar-bench-analytics:"
PASSWORD = "bench-password-" + secrets.token_hex(4)
ADMIN_EMAIL = "admin@bench.example"
TARGET_RATIO = 0.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--beacons", type=parse_size, default=10_000_000, help="beacons landed (default 10M)")
    parser.add_argument("--purchases", type=int, default=3000, help="purchases landed (default 3000)")
    parser.add_argument(
        "--warehouse-dir", type=Path, help="use this built warehouse (serve/current) instead of building one"
    )
    parser.add_argument("--seconds", type=int, default=8, help="seconds per round (default 8)")
    parser.add_argument("--concurrency", type=int, default=16, help="open connections (default 16)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per route (default 3)")
    parser.add_argument("--client", choices=["auto", "wrk", "asyncio"], default="auto")
    args = parser.parse_args()
    if args.client == "wrk" and shutil.which("wrk") is None:
        parser.error("wrk is not installed, or use --client asyncio")
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "asyncio"
    return args


def drive(args: argparse.Namespace, target: Target, *, warmup: bool = False) -> Measure:
    seconds = 1 if warmup else args.seconds
    meter = CpuMeter(target.pid)
    if args.client == "wrk":
        measure = drive_wrk(target.url, target.headers, seconds, args.concurrency)
    else:
        client = drive_asyncio(target.url, target.headers, None, args.concurrency, seconds=seconds)
        measure = asyncio.run(client)
    measure.server_cpu, measure.client_cpu = meter.shares(measure.seconds)
    return measure


def build(args: argparse.Namespace, workdir: Path) -> Path:
    root = workdir / "warehouse"
    root.mkdir()
    now = datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    beacons, events = land_base(root, args.beacons, purchases=args.purchases, now=now)
    print(f"landed {beacons:,} beacons and {events:,} domain events in {time.perf_counter() - started:.1f} s")
    print("full build ...", flush=True)
    result = timed_build(root, full_refresh=True, verbose=False)
    print(f"built and published {result.version} in {result.seconds:.1f} s", flush=True)
    return root


def main() -> int:
    args = parse_args()
    # A plain kill (SIGTERM) still runs the clean-up in the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not services_answer():
        return 2
    use_redis = reachable(6379)
    print_machine()
    print(f"client: {args.client}, concurrency {args.concurrency}, {args.rounds} rounds per route")
    workdir = Path(tempfile.mkdtemp(prefix="bazaar-bench-analytics-"))
    runs: dict[str, list[Measure]] = {}
    try:
        root = args.warehouse_dir.resolve() if args.warehouse_dir else build(args, workdir)
        version = WarehouseLayout(root).current_version()
        if version is None:
            raise RuntimeError(f"{root} has no published version (serve/current)")
        print(f"warehouse {root}, serving {version}; {load_average()}")
        with (
            bench_database(DATABASE, REDIS_PREFIX, use_redis=use_redis) as database_url,
            stopped_at_exit() as servers,
        ):
            base_env = {
                **api_env(database_url, REDIS_PREFIX, use_redis=use_redis),
                "WAREHOUSE_DIR": str(root),
            }
            create_admin(base_env, ADMIN_EMAIL, PASSWORD)
            logs = workdir / "logs"
            logs.mkdir()
            for name, ttl in (("nocache", "0"), ("cache", "300")):
                servers.append(start_api(name, {**base_env, "ANALYTICS_CACHE_TTL_SECONDS": ttl}, logs))
            servers.append(start_module("noop", "bench.noop_app", [], base_env, logs, ready_path="/noop"))
            for server in servers:
                wait_ready(server)
            nocache, cache, noop = servers
            with httpx.Client(base_url=nocache.url, timeout=30) as http:
                sign_up(http, "builder", PASSWORD, email="builder@bench.example", name="Bench Builder")
                auth = log_in(http, ADMIN_EMAIL, PASSWORD)  # both APIs share the database and JWT secret

            today = datetime.now(UTC).date()
            period = f"from={today - timedelta(days=29)}&to={today}"
            targets = {
                f"{route} {server.name}": Target(
                    f"{server.url}/api/analytics/{route}?{period}", auth, server.process.pid
                )
                for server in (nocache, cache)
                for route in ("platform", "usage")
            }
            targets["me cache"] = Target(f"{cache.url}/api/auth/me", auth, cache.process.pid)
            targets["noop"] = Target(f"{noop.url}/noop", {}, noop.process.pid)
            answers: dict[str, bytes] = {}
            for name, target in targets.items():
                check = httpx.get(target.url, headers=target.headers, timeout=30)
                if check.status_code != 200:
                    raise RuntimeError(f"{target.url} answered {check.status_code}: {check.text}")
                body = check.json()
                answers[name] = check.content
                if name.split()[0] in ("platform", "usage"):
                    served = (body.get("warehouse") or {}).get("version")
                    if served != version:
                        raise RuntimeError(f"{name} answered from warehouse {served!r}, expected {version}")
                drive(args, target, warmup=True)
            for route in ("platform", "usage"):
                cached = httpx.get(targets[f"{route} cache"].url, headers=auth, timeout=30).content
                if cached != answers[f"{route} nocache"]:
                    raise RuntimeError(f"{route}: the cached answer differs from the uncached one")
            runs = {name: [] for name in targets}
            print(f"{load_average()} before the rounds")
            for round_no, name in in_turns(list(targets), args.rounds, rotate=True):
                measure = drive(args, targets[name])
                if measure.errors:
                    raise RuntimeError(f"{name}: {measure.errors} failed requests of {measure.requests}")
                runs[name].append(measure)
                print(
                    f"round {round_no + 1} {name:<17} {measure.rps:>7.0f} req/s  "
                    f"p50 {measure.p50_ms:7.2f} ms  p99 {measure.p99_ms:7.2f} ms  "
                    f"({measure.requests} requests in {measure.seconds:.2f} s; "
                    f"cpu server {measure.server_cpu:.2f} client {measure.client_cpu:.2f})",
                    flush=True,
                )
            ensure_running(servers)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    noop_rps = statistics.median(m.rps for m in runs["noop"])
    summary = {}
    print()
    print(f"{human(args.beacons)} beacons, concurrency {args.concurrency}, medians of {args.rounds} rounds")
    for name, measures in runs.items():
        rps = statistics.median(m.rps for m in measures)
        p50 = statistics.median(m.p50_ms for m in measures)
        p99 = statistics.median(m.p99_ms for m in measures)
        ratio = rps / noop_rps
        summary[name] = {"rps": rps, "p50_ms": p50, "p99_ms": p99, "ratio": ratio}
        verdict = "" if name == "noop" else ("  meets 0.5" if ratio >= TARGET_RATIO else "  BELOW 0.5")
        print(
            f"{name:<17} {rps:>7.0f} req/s  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  ratio {ratio:5.2f}{verdict}"
        )
    print(f"{load_average()} after the run")

    write_results(
        "analytics",
        {
            "beacons": args.beacons,
            "client": args.client,
            "concurrency": args.concurrency,
            "redis": use_redis,
            "summary": summary,
            "runs": {name: [asdict(m) for m in measures] for name, measures in runs.items()},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
