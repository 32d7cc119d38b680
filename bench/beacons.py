"""Widget usage beacons: accepted events per second through the real API, against a no-op
FastAPI route in the same run, then zero loss from the 202 to the landing Parquet.

Setup through the API (``bazaar serve``, one worker, a fresh database
``bazaar_bench_beacons_<pid>`` on the machine's Postgres, Redis keys under
``bazaar-bench-beacons-<pid>:``): a builder lists a project, an end user buys it and generates
its widget (allowed on ``SITE``, 600 beacons per minute per visitor), and ``--visitors``
visitors open a session each. The baseline is ``POST /noop`` of a
FastAPI app that this script serves itself (``--serve-noop``) under the options of ``bazaar
serve``: it reads the body and answers ``{"ok": true}``.

Throughput: alternating rounds (order flipped every round) of ``--seconds`` each, with
``--concurrency`` keep-alive connections on a minimal HTTP/1.1 client (uvloop), of the same
requests to both servers: ``POST /api/widgets/{id}/track-usage`` with ``Origin: SITE``, a
``text/plain`` JSON body ``{token, events}`` as ``navigator.sendBeacon`` sends it (visitors in
turn), one event per request, then batches of ``--batch`` (50). Every event id is new. Any
answer other than 202 (200 for the no-op) fails the run. Target: single-event ratio >= 0.6.

Zero loss: every event id answered 202 (warm-up included) must be in the landing Parquet. With
the API stopped, ``bazaar consume-usage`` runs on a temporary ``WAREHOUSE_DIR``; once it has
landed its first file it is killed with SIGKILL (what it read but did not acknowledge stays
pending), and a second consumer, reclaiming after 2 s idle, drains the stream. Then the distinct
event ids landed are compared with the ids accepted (duplicates from the killed consumer's last
batch are allowed: at-least-once, dbt deduplicates on ``event_id``).

Everything listens on 127.0.0.1 only; the servers, the database, the Redis keys and the
warehouse folder are removed at the end. Writes ``bench/results/beacons-<UTC time>.json``.

    .venv/bin/python bench/beacons.py            # about 1.5 minutes
    .venv/bin/python bench/beacons.py --help
"""

import argparse
import asyncio
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Run as a script, bench/ is not a package: the project root on sys.path makes ``bench.*``.
from bench.common import (  # noqa: E402
    client_cpu_seconds,
    expect,
    load_average,
    machine_note,
    percentile,
    process_cpu_seconds,
    run_fast,
    sign_up,
)
from bench.servers import (  # noqa: E402
    HOST,
    REDIS_URL,
    Server,
    api_env,
    clean_redis,
    create_database,
    drop_database,
    free_port,
    reachable,
    start,
    stop,
    wait_ready,
)

# Per process, so two runs cannot drop each other's database or keys.
DATABASE = f"bazaar_bench_beacons_{os.getpid()}"
REDIS_PREFIX = f"bazaar-bench-beacons-{os.getpid()}:"
STREAM = REDIS_PREFIX + "usage"  # Settings.usage_stream's default
GROUP = "landing"  # app.worker.usage_consumer.GROUP
SITE = "https://shop.bench.example"
PASSWORD = "bench-password-" + secrets.token_hex(4)
TARGET_RATIO = 0.6
KINDS = ("impression", "open", "message", "tokens")
OCCURRED_AT = "2026-11-26T10:00:00.000Z"


# --- the baseline server --------------------------------------------------------------------


def serve_noop(port: int) -> None:
    """``POST /noop``: read the body, answer ``{"ok": true}``; ``GET /noop`` for readiness."""
    import uvicorn
    from fastapi import FastAPI, Request

    app = FastAPI(title="noop")

    @app.get("/noop")
    async def ready() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/noop")
    async def noop(request: Request) -> dict[str, bool]:
        await request.body()
        return {"ok": True}

    uvicorn.run(app, host=HOST, port=port, workers=1, log_config=None, access_log=False, proxy_headers=False)


# --- load -----------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    port: int
    path: str
    expect: bytes  # status code
    pid: int
    batch: int
    counts: bool  # whether its 202s are beacons accepted into the stream


@dataclass
class Measure:
    requests: int
    events: int
    seconds: float
    requests_per_s: float
    events_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu: float = 0.0
    client_cpu: float = 0.0


@dataclass
class Load:
    """What the client sends: event ids from a counter (unique in the run), visitors in turn."""

    tokens: list[str]
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    counter: "itertools.count[int]" = field(default_factory=itertools.count)
    sent: "itertools.count[int]" = field(default_factory=itertools.count)
    accepted: list[str] = field(default_factory=list)

    def request(self, target: Target) -> tuple[bytes, list[str]]:
        numbers = [next(self.counter) for _ in range(target.batch)]
        ids = [f"b{self.run_id}-{n:010d}" for n in numbers]
        events = ",".join(_event(event_id, n) for event_id, n in zip(ids, numbers, strict=True))
        token = self.tokens[next(self.sent) % len(self.tokens)]
        body = f'{{"token":"{token}","events":[{events}]}}'.encode()
        head = (
            f"POST {target.path} HTTP/1.1\r\nHost: {HOST}:{target.port}\r\nOrigin: {SITE}\r\n"
            f"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body, ids


def _event(event_id: str, n: int) -> str:
    kind = KINDS[n % len(KINDS)]
    extra = ',"count":180,"latencyMs":420' if kind == "tokens" else ""
    return f'{{"eventId":"{event_id}","kind":"{kind}","occurredAt":"{OCCURRED_AT}"{extra}}}'


class Refused(RuntimeError):
    pass


async def drive(load: Load, target: Target, seconds: float, concurrency: int) -> Measure:
    """``concurrency`` keep-alive connections posting for ``seconds``; each request waits for
    its answer. A 202 from the API adds its event ids to ``load.accepted``."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(HOST, target.port)
        try:
            while time.perf_counter() < deadline:
                request, ids = load.request(target)
                started = time.perf_counter()
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=60)
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if length is None:
                    raise RuntimeError(f"response without Content-Length: {head!r}")
                body = await reader.readexactly(int(length.group(1)))
                latencies.append(time.perf_counter() - started)
                if head[9:12] != target.expect:
                    raise Refused(f"{target.name}: {head[:12].decode()} {body.decode(errors='replace')}")
                if target.counts:
                    load.accepted.extend(ids)
        finally:
            writer.close()
            await writer.wait_closed()

    server_before, client_before = process_cpu_seconds(target.pid), client_cpu_seconds()
    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    server_after = process_cpu_seconds(target.pid)
    measure = Measure(
        requests=len(latencies),
        events=len(latencies) * target.batch,
        seconds=elapsed,
        requests_per_s=len(latencies) / elapsed,
        events_per_s=len(latencies) * target.batch / elapsed,
        p50_ms=percentile(latencies, 0.5) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        client_cpu=(client_cpu_seconds() - client_before) / elapsed,
    )
    if server_before is not None and server_after is not None:
        measure.server_cpu = (server_after - server_before) / elapsed
    return measure


# --- setup through the API ------------------------------------------------------------------


def make_widget(api: str, visitors: int) -> tuple[str, list[str]]:
    """A listed project, bought, its widget generated by the buyer; one session per visitor."""
    with httpx.Client(base_url=api, timeout=60) as http:
        builder = sign_up(http, "builder", PASSWORD)
        project = expect(http.post("/api/projects", json={"name": "Beacon bench"}, headers=builder), 201)
        for status in ("in_development", "ready"):
            path = f"/api/projects/{project['id']}/status"
            expect(http.put(path, json={"status": status}, headers=builder), 200)
        listing = {
            "priceMinor": 900,
            "currency": "usd",
            "description": "A chat app for the beacon benchmark.",
            "category": "customer-support",
            "tags": ["bench"],
        }
        expect(
            http.post(f"/api/marketplace/projects/{project['id']}/publish", json=listing, headers=builder),
            201,
        )
        buyer = sign_up(http, "end_user", PASSWORD)
        key = {"Idempotency-Key": secrets.token_hex(8)}
        expect(
            http.post(
                "/api/marketplace/purchase", json={"projectId": project["id"]}, headers={**buyer, **key}
            ),
            201,
        )
        widget = expect(
            http.post(
                "/api/widgets/generate",
                json={
                    "projectId": project["id"],
                    "allowedOrigins": [SITE],
                    "behaviour": {"rateLimits": {"beaconsPerMinutePerVisitor": 600}},
                },
                headers={**buyer, "Idempotency-Key": secrets.token_hex(8)},
            ),
            201,
        )
        tokens = []
        for number in range(visitors):
            session = expect(
                http.post(
                    "/widget/v1/session",
                    json={"widgetKey": widget["publicKey"], "visitorId": f"bench-visitor-{number}"},
                    headers={"Origin": SITE},
                ),
                201,
            )
            tokens.append(session["token"])
    return str(widget["id"]), tokens


# --- zero loss ------------------------------------------------------------------------------


@dataclass
class Landing:
    accepted: int
    in_stream: int
    landed_rows: int
    landed_distinct: int
    missing: int
    unexpected: int
    rejected_files: int
    killed_consumer_after_files: int | None
    pending_at_kill: int  # read by the killed consumer, not acknowledged: the second must reclaim them
    drain_seconds: float


def stream_state(client: redis.Redis) -> tuple[int, int]:
    """(entries in the stream, entries delivered but not acknowledged)."""
    length = int(client.xlen(STREAM))
    try:
        pending = int(client.xpending(STREAM, GROUP)["pending"])
    except redis.ResponseError:  # no group yet
        pending = 0
    return length, pending


def parquet_files(warehouse: Path) -> list[Path]:
    return sorted((warehouse / "landing" / "usage").glob("dt=*/*.parquet"))


def prove_landing(
    accepted: list[str], env: dict[str, str], logs: Path, warehouse: Path, timeout: float
) -> Landing:
    import polars as pl

    client = redis.Redis.from_url(REDIS_URL)
    in_stream = int(client.xlen(STREAM))
    consumer_env = {
        **env,
        "WAREHOUSE_DIR": str(warehouse),
        "LANDING_FLUSH_SECONDS": "0.5",
        "LANDING_BATCH_SIZE": "2000",
        "LANDING_CLAIM_IDLE_SECONDS": "2",
    }
    command = [str(ROOT / ".venv" / "bin" / "bazaar"), "consume-usage"]
    started = time.perf_counter()
    deadline = started + timeout
    killed_after: int | None = None
    pending_at_kill = 0
    first = start("consumer-1", command, consumer_env, logs)
    try:
        while time.perf_counter() < deadline and first.process.poll() is None:
            files = len(parquet_files(warehouse))
            if files and stream_state(client)[0] > 0:
                first.process.send_signal(signal.SIGKILL)  # mid-stream, nothing flushed or acknowledged
                first.process.wait(timeout=10)
                killed_after = files
                pending_at_kill = stream_state(client)[1]
                break
            if files and stream_state(client) == (0, 0):
                break  # it drained everything before it could be killed
            time.sleep(0.02)
    finally:
        stop(first)
    second = start("consumer-2", command, consumer_env, logs)
    try:
        while stream_state(client) != (0, 0):
            if time.perf_counter() > deadline:
                raise RuntimeError(
                    f"the stream was not drained within {timeout:.0f} s: {stream_state(client)}"
                )
            if second.process.poll() is not None:
                raise RuntimeError(f"the consumer exited:\n{second.tail()}")
            time.sleep(0.05)
        drained = time.perf_counter() - started
    finally:
        stop(second)
        client.close()
    landed_files = parquet_files(warehouse)
    ids = (
        pl.concat([pl.read_parquet(path, columns=["event_id"]) for path in landed_files])["event_id"]
        if landed_files
        else pl.Series("event_id", [], dtype=pl.String)
    )
    landed = set(ids.to_list())
    wanted = set(accepted)
    return Landing(
        accepted=len(wanted),
        in_stream=in_stream,
        landed_rows=len(ids),
        landed_distinct=len(landed),
        missing=len(wanted - landed),
        unexpected=len(landed - wanted),
        rejected_files=sum(1 for _ in (warehouse / "rejected").rglob("*.jsonl")),
        killed_consumer_after_files=killed_after,
        pending_at_kill=pending_at_kill,
        drain_seconds=drained,
    )


# --- main -----------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per round (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per target, alternating (default 3)")
    parser.add_argument("--concurrency", type=int, default=32, help="open connections (default 32)")
    parser.add_argument("--batch", type=int, default=50, help="events per batched request (default 50)")
    parser.add_argument(
        "--visitors", type=int, default=200, help="visitor sessions taking turns (default 200)"
    )
    parser.add_argument("--drain-timeout", type=float, default=180.0, help="seconds to land everything")
    parser.add_argument("--serve-noop", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 0.5 <= args.seconds <= 60:
        parser.error("--seconds must be between 0.5 and 60")
    if not 1 <= args.rounds <= 20 or not 1 <= args.concurrency <= 256:
        parser.error("--rounds must be 1-20 and --concurrency 1-256")
    if not 2 <= args.batch <= 100:
        parser.error("--batch must be between 2 and 100 (the API takes at most 100 events)")
    if not 1 <= args.visitors <= 1000:
        parser.error("--visitors must be between 1 and 1000")
    return args


def main() -> int:
    args = parse_args()
    if args.serve_noop:
        serve_noop(args.serve_noop)
        return 0
    if not reachable(5432) or not reachable(6379):
        print(f"Postgres ({HOST}:5432) and Redis ({HOST}:6379) must both answer.", file=sys.stderr)
        return 2
    print(f"machine: {machine_note()}; {load_average()} before the run")
    print(
        f"{args.rounds} rounds of {args.seconds:g} s per target, concurrency {args.concurrency}, "
        f"{args.visitors} visitors, batches of {args.batch}"
    )
    database_url = create_database(DATABASE)
    clean_redis(REDIS_PREFIX)
    env = {
        **api_env(database_url, REDIS_PREFIX, use_redis=True),
        "WIDGET_BEACON_RATE_LIMIT": "10000000/minute",
        "WIDGET_SESSION_RATE_LIMIT": "100000/minute",
        "WIDGET_SESSION_RATE_LIMIT_IP": "100000/minute",  # 200 visitors from one address
    }
    api_port, noop_port = free_port(), free_port()
    python = str(ROOT / ".venv" / "bin" / "python")
    servers: list[Server] = []
    runs: dict[str, list[Measure]] = {}
    load = Load(tokens=[])
    with tempfile.TemporaryDirectory(prefix="bazaar-bench-beacons-") as work:
        logs, warehouse = Path(work), Path(work) / "warehouse"
        try:
            api_command = [str(ROOT / ".venv" / "bin" / "bazaar"), "serve", "--port", str(api_port)]
            servers.append(start("api", [*api_command, "--workers", "1"], env, logs))
            servers.append(
                start(
                    "noop", [python, str(Path(__file__).resolve()), "--serve-noop", str(noop_port)], env, logs
                )
            )
            api, noop = f"http://{HOST}:{api_port}", f"http://{HOST}:{noop_port}"
            wait_ready(servers[0], f"{api}/healthz")
            wait_ready(servers[1], f"{noop}/noop")
            setup_started = time.perf_counter()
            widget_id, load.tokens = make_widget(api, args.visitors)
            setup_seconds = time.perf_counter() - setup_started
            print(f"setup: widget {widget_id} and {args.visitors} sessions in {setup_seconds:.1f} s")

            track = f"/api/widgets/{widget_id}/track-usage"
            api_pid, noop_pid = servers[0].process.pid, servers[1].process.pid
            targets = {
                "single": Target("single", api_port, track, b"202", api_pid, 1, True),
                "noop-single": Target("noop-single", noop_port, "/noop", b"200", noop_pid, 1, False),
                f"batch{args.batch}": Target(
                    f"batch{args.batch}", api_port, track, b"202", api_pid, args.batch, True
                ),
                f"noop-batch{args.batch}": Target(
                    f"noop-batch{args.batch}", noop_port, "/noop", b"200", noop_pid, args.batch, False
                ),
            }
            for target in targets.values():
                run_fast(drive(load, target, 0.5, args.concurrency))  # warm-up
            runs = {name: [] for name in targets}
            names = list(targets)
            for round_no in range(args.rounds):
                for name in names if round_no % 2 == 0 else names[::-1]:
                    measure = run_fast(drive(load, targets[name], args.seconds, args.concurrency))
                    runs[name].append(measure)
                    print(
                        f"round {round_no + 1} {name:<13} {measure.events_per_s:>9,.0f} events/s "
                        f"{measure.requests_per_s:>7,.0f} req/s  p50 {measure.p50_ms:6.2f} ms  "
                        f"p99 {measure.p99_ms:6.2f} ms  (cpu server {measure.server_cpu:.2f} "
                        f"client {measure.client_cpu:.2f})"
                    )
            for server in servers:
                if server.process.poll() is not None:
                    raise RuntimeError(f"{server.name} died during the run:\n{server.tail()}")
            for server in servers:
                stop(server)
            print(f"accepted {len(load.accepted):,} events (warm-up included); landing them ...")
            landing = prove_landing(load.accepted, env, logs, warehouse, args.drain_timeout)
        except Refused as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
        finally:
            for server in servers:
                stop(server)
            drop_database(DATABASE)
            clean_redis(REDIS_PREFIX)
            shutil.rmtree(warehouse, ignore_errors=True)

    medians = {name: statistics.median(m.events_per_s for m in measures) for name, measures in runs.items()}
    single_ratio = medians["single"] / medians["noop-single"]
    batch_ratio = medians[f"batch{args.batch}"] / medians[f"noop-batch{args.batch}"]
    verdict = "meets" if single_ratio >= TARGET_RATIO else "BELOW"
    print()
    for name, value in medians.items():
        print(f"{name:<15} {value:>10,.0f} events/s (median of {args.rounds})")
    print(f"ratio single/noop       {single_ratio:.2f}  ({verdict} the target of {TARGET_RATIO})")
    print(f"ratio batch{args.batch}/noop      {batch_ratio:.2f}")
    killed = (
        f"consumer 1 killed (SIGKILL) after {landing.killed_consumer_after_files} files with "
        f"{landing.pending_at_kill:,} entries read and not acknowledged"
        if landing.killed_consumer_after_files is not None
        else "consumer 1 drained everything before it could be killed"
    )
    print(
        f"landing: {landing.accepted:,} accepted, {landing.in_stream:,} in the stream, "
        f"{landing.landed_distinct:,} distinct ids landed ({landing.landed_rows:,} rows), "
        f"{landing.missing} missing, {landing.unexpected} unexpected, {landing.rejected_files} rejected "
        f"files; {killed}; drained in {landing.drain_seconds:.1f} s"
    )
    lost = (
        landing.missing
        or landing.unexpected
        or landing.rejected_files
        or landing.in_stream != landing.accepted
    )
    print("ZERO LOSS" if not lost else "LOSS OR MISMATCH: see the line above")
    print(f"{load_average()} after the run")
    noop_client = statistics.median(m.client_cpu for m in runs["noop-single"])
    if noop_client > 0.9:
        print(
            f"warning: the load generator used {noop_client:.2f} of a core against /noop: the baseline "
            "may be client-bound, which overstates the ratio"
        )

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"beacons-{stamp}.json").write_text(
        json.dumps(
            {
                "at": stamp,
                "machine": machine_note(),
                "load_average_after": load_average(),
                "args": {k: v for k, v in vars(args).items() if k != "serve_noop"},
                "runs": {name: [asdict(m) for m in measures] for name, measures in runs.items()},
                "medians_events_per_s": medians,
                "ratio_single": single_ratio,
                "ratio_batch": batch_ratio,
                "landing": asdict(landing),
            },
            indent=2,
        )
    )
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
