"""Login latency and GET /api/auth/me throughput, against a no-op FastAPI route in the same run.

The real API runs as ``bazaar serve`` (uvicorn, one worker) on a fresh database ``bazaar_bench``
on the machine's Postgres (127.0.0.1:5432) and Redis (127.0.0.1:6379, keys under
``bazaar-bench:``; the in-process fallback when Redis does not answer). The baseline is
``bench/noop_app.py`` under the same uvicorn options. The script signs a user up, logs in a
bounded number of times, then drives both routes in alternating rounds (``wrk`` when it is
installed, else a minimal keep-alive HTTP/1.1 client on asyncio: httpx itself saturates long
before the no-op server does) and prints the medians and the ratio me/noop. Each round also
reports how busy the server and the client were (share of one CPU core), so a client-bound or
noisy run shows. Target: ratio >= 0.5. Everything listens on 127.0.0.1 only; both servers, the
database and the Redis keys are removed at the end.

    make bench                      # or: .venv/bin/python bench/auth_me.py --help
"""

import argparse
import asyncio
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Run as a script, bench/ is not a package: the project root on sys.path makes ``bench.*``.
from bench.common import (  # noqa: E402
    CpuMeter,
    Measure,
    Target,
    drive_wrk,
    in_turns,
    load_average,
    percentile,
    print_machine,
    run_async_client,
    write_results,
)

# bench/beacons.py imports these from here (they moved to bench.common).
from bench.servers import (  # noqa: E402
    REDIS_URL,
    api_env,
    bench_database,
    ensure_running,
    reachable,
    services_answer,
    start_api,
    start_module,
    stopped_at_exit,
    wait_ready,
)

DATABASE = "bazaar_bench"
REDIS_PREFIX = "bazaar-bench:"
PASSWORD = "bench-password-" + secrets.token_hex(4)
TARGET_RATIO = 0.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logins", type=int, default=20, help="sequential logins timed (default 20)")
    parser.add_argument(
        "--concurrent-logins",
        type=int,
        default=16,
        help="logins sent 4 at a time, for throughput (default 16)",
    )
    parser.add_argument("--requests", type=int, default=10000, help="requests per round, asyncio client")
    parser.add_argument("--seconds", type=int, default=5, help="seconds per round, wrk client (default 5)")
    parser.add_argument("--concurrency", type=int, default=32, help="open connections (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per route, alternating (default 3)")
    parser.add_argument("--client", choices=["auto", "wrk", "asyncio"], default="auto")
    args = parser.parse_args()
    for name in ("logins", "concurrent_logins", "requests", "seconds", "concurrency", "rounds"):
        if not 1 <= getattr(args, name) <= 100_000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 100000")
    if args.client == "wrk" and shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk), or use --client asyncio")
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "asyncio"
    return args


def sign_up_and_log_in(api: str, logins: int, concurrent: int) -> tuple[str, dict[str, float]]:
    """Sign a builder up through the API, time sequential logins, then logins 4 at a time."""
    email = f"bench-{secrets.token_hex(4)}@bench.example"
    body = {"email": email, "password": PASSWORD, "name": "Bench User", "persona": "builder"}
    with httpx.Client(base_url=api, timeout=30) as http:
        created = http.post("/api/users", json=body)
        if created.status_code != 201:
            raise RuntimeError(f"sign-up failed: {created.status_code} {created.text}")
        latencies, token = [], ""
        for _ in range(logins):
            started = time.perf_counter()
            response = http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"login failed: {response.status_code} {response.text}")
            token = response.json()["accessToken"]

    async def parallel_logins() -> float:
        async with httpx.AsyncClient(base_url=api, timeout=60) as client:
            gate = asyncio.Semaphore(4)

            async def one() -> None:
                async with gate:
                    response = await client.post(
                        "/api/auth/login", json={"email": email, "password": PASSWORD}
                    )
                    if response.status_code != 200:
                        raise RuntimeError(f"login failed: {response.status_code} {response.text}")

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(concurrent)))
            return concurrent / (time.perf_counter() - started)

    login_stats = {
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "sequential_per_s": logins / sum(latencies),
        "concurrent4_per_s": asyncio.run(parallel_logins()),
    }
    return token, login_stats


def drive(args: argparse.Namespace, target: Target, *, warmup: bool = False) -> Measure:
    meter = CpuMeter(target.pid)
    if args.client == "wrk":
        measure = drive_wrk(target.url, target.headers, 1 if warmup else args.seconds, args.concurrency)
    else:
        requests = max(args.requests // 10, 100) if warmup else args.requests
        measure = run_async_client(target.url, target.headers, requests, args.concurrency)
    measure.server_cpu, measure.client_cpu = meter.shares(measure.seconds)
    return measure


def main() -> int:
    args = parse_args()
    if not services_answer():
        return 2
    use_redis = reachable(6379)
    print_machine()
    print(f"client: {args.client}, concurrency {args.concurrency}, {args.rounds} rounds per route")
    print(f"redis: {REDIS_URL if use_redis else 'not answering: in-process fallback'}")

    with (
        bench_database(DATABASE, REDIS_PREFIX, use_redis=use_redis) as database_url,
        tempfile.TemporaryDirectory(prefix="bazaar-bench-") as logs,
        stopped_at_exit() as servers,
    ):
        env = api_env(database_url, REDIS_PREFIX, use_redis=use_redis)
        api = start_api("api", env, Path(logs))
        servers.append(api)
        noop = start_module("noop", "bench.noop_app", [], env, Path(logs), ready_path="/noop")
        servers.append(noop)
        wait_ready(api)
        wait_ready(noop)

        token, login = sign_up_and_log_in(api.url, args.logins, args.concurrent_logins)
        print(
            f"login: p50 {login['p50_ms']:.1f} ms, p95 {login['p95_ms']:.1f} ms over {args.logins} "
            f"sequential logins ({login['sequential_per_s']:.1f}/s); "
            f"{login['concurrent4_per_s']:.1f}/s with 4 at a time"
        )

        targets = {
            "me": Target(f"{api.url}/api/auth/me", {"Authorization": f"Bearer {token}"}, api.process.pid),
            "noop": Target(f"{noop.url}/noop", {}, noop.process.pid),
        }
        for target in targets.values():
            check = httpx.get(target.url, headers=target.headers, timeout=10)
            if check.status_code != 200:
                raise RuntimeError(f"{target.url} answered {check.status_code}: {check.text}")
            drive(args, target, warmup=True)

        runs: dict[str, list[Measure]] = {"me": [], "noop": []}
        for round_no, name in in_turns(["me", "noop"], args.rounds):
            measure = drive(args, targets[name])
            if measure.errors:
                raise RuntimeError(f"{name}: {measure.errors} failed requests of {measure.requests}")
            runs[name].append(measure)
            print(
                f"round {round_no + 1} {name:<4} {measure.rps:>8.0f} req/s  "
                f"p50 {measure.p50_ms:6.2f} ms  p99 {measure.p99_ms:6.2f} ms  "
                f"({measure.requests} requests in {measure.seconds:.2f} s; "
                f"cpu server {measure.server_cpu:.2f} client {measure.client_cpu:.2f})"
            )
        ensure_running(servers)

    me_rps = statistics.median(m.rps for m in runs["me"])
    noop_rps = statistics.median(m.rps for m in runs["noop"])
    ratio = me_rps / noop_rps
    verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
    print()
    print(f"GET /api/auth/me  {me_rps:8.0f} req/s (median of {args.rounds})")
    print(f"GET /noop         {noop_rps:8.0f} req/s (median of {args.rounds})")
    print(f"ratio me/noop     {ratio:8.2f}  ({verdict} the target of {TARGET_RATIO})")
    print(f"{load_average()} after the run")
    noop_client_cpu = statistics.median(m.client_cpu for m in runs["noop"])
    if noop_client_cpu > 0.9:
        print(
            f"warning: the load generator used {noop_client_cpu:.2f} of a core against /noop: the baseline "
            "may be client-bound, which overstates the ratio"
        )

    write_results(
        "auth_me",
        {
            "client": args.client,
            "concurrency": args.concurrency,
            "redis": use_redis,
            "login": login,
            "me": [asdict(m) for m in runs["me"]],
            "noop": [asdict(m) for m in runs["noop"]],
            "me_rps": me_rps,
            "noop_rps": noop_rps,
            "ratio": ratio,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
