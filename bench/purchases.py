"""Concurrent marketplace purchases through the real API, then the money checked in the database.

The API runs as ``bazaar serve`` (uvicorn, one worker, the local payment provider) on a fresh
database ``bazaar_bench_purchases`` on the machine's Postgres (127.0.0.1:5432) and Redis
(127.0.0.1:6379, keys under ``bazaar-bench-purchases:``; the in-process fallback when Redis does
not answer). Through the API the script signs up builders, who each publish one listing, and
two cohorts of buyers. Then:

1. **storm**: the first cohort's purchases (200 by default), all sent at once, one connection
   each, by a minimal HTTP/1.1 client on asyncio (connections are opened first, then every
   request is released together);
2. **duplicate storm**: the second cohort's purchases, each sent twice at once with the same
   ``Idempotency-Key`` (400 requests): every pair must give one 201 and one 200 with the same id;
3. a **baseline** in the same run, so the machine's speed and load divide out: public
   ``GET /api/marketplace/projects`` (browse, a database read) and ``GET /healthz``, each
   measured before, between and after the storms (median of 3).

Afterwards it checks the database: exactly one purchase per (buyer, listing) and per phase the
expected count, one payment and one settlement per purchase, every ledger transaction sums to
zero, listing purchase counts, gapless invoice numbers, the outbox's ``purchase.completed``
gross equals the ledger's gross legs, and ``bazaar ledger check``'s invariants when
``app.revenue.service.check_ledger`` exists. Any failed request or check fails the run.
Everything listens on 127.0.0.1 only; the server, the database and the Redis keys are removed
at the end.

    .venv/bin/python bench/purchases.py --help
"""

import argparse
import asyncio
import json
import re
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Run as a script, bench/ is not a package: the project root on sys.path makes ``bench.*``.
from bench.common import (  # noqa: E402
    CpuMeter,
    Measure,
    load_average,
    percentile,
    print_machine,
    run_async_client,
    write_results,
)
from bench.servers import (  # noqa: E402
    HOST,
    REDIS_URL,
    Server,
    api_env,
    bench_database,
    ensure_running,
    reachable,
    services_answer,
    start_api,
    stopped_at_exit,
    wait_ready,
)

DATABASE = "bazaar_bench_purchases"
REDIS_PREFIX = "bazaar-bench-purchases:"
PASSWORD = "bench-password-" + secrets.token_hex(4)
CATEGORIES = ["customer-support", "sales", "education", "productivity", "finance", "developer-tools"]


@dataclass
class Account:
    id: str
    token: str


@dataclass
class Storm:
    """One burst of purchase requests (or, ``concurrent`` false, the same sent one by one)."""

    name: str
    concurrent: bool
    requests: int
    purchases: int
    seconds: float
    statuses: dict[int, int]
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu: float
    client_cpu: float
    # What the database's busy connections were doing, sampled: {"Lock:transactionid ...": share}.
    waits: dict[str, float] = field(default_factory=dict)

    @property
    def purchases_per_s(self) -> float:
        return self.purchases / self.seconds


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Report:
    storms: list[Storm] = field(default_factory=list)
    baselines: dict[str, list[Measure]] = field(default_factory=lambda: {"browse": [], "healthz": []})
    checks: list[Check] = field(default_factory=list)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--builders", type=int, default=20, help="builders, one listing each (default 20)")
    parser.add_argument("--buyers", type=int, default=25, help="buyers per cohort (default 25)")
    parser.add_argument(
        "--per-buyer", type=int, default=8, help="distinct listings each buyer buys (default 8)"
    )
    parser.add_argument(
        "--sequential",
        type=int,
        default=20,
        help="purchases made one at a time first, for the uncontended latency (default 20)",
    )
    parser.add_argument(
        "--baseline-requests", type=int, default=2000, help="requests per baseline round (default 2000)"
    )
    parser.add_argument(
        "--baseline-concurrency", type=int, default=32, help="connections of the baseline (default 32)"
    )
    args = parser.parse_args()
    for name, high in (
        ("builders", 200),
        ("buyers", 1000),
        ("per_buyer", 200),
        ("sequential", 1000),
        ("baseline_requests", 100_000),
        ("baseline_concurrency", 512),
    ):
        if not 1 <= getattr(args, name) <= high:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and {high}")
    if args.per_buyer + (args.sequential - 1) // args.buyers >= args.builders:
        parser.error(
            "the first cohort buys --per-buyer listings in the storm and its share of --sequential "
            "before: that must stay below --builders (a buyer buys each listing once)"
        )
    if args.buyers * args.per_buyer * 2 > 1000:
        parser.error("at most 1000 purchase requests per storm (buyers x per-buyer x 2)")
    return args


# --- database, Redis, server ------------------------------------------------------------------


def server_env(database_url: str, use_redis: bool) -> dict[str, str]:
    return api_env(database_url, REDIS_PREFIX, use_redis=use_redis)


# --- the world, through the API ---------------------------------------------------------------


async def sign_up(http: httpx.AsyncClient, persona: str, gate: asyncio.Semaphore) -> Account:
    email = f"bench-{persona.replace('_', '')}-{secrets.token_hex(6)}@bench.example"
    async with gate:
        created = await http.post(
            "/api/users",
            json={"email": email, "password": PASSWORD, "name": f"Bench {persona}", "persona": persona},
        )
        expect(created, 201)
        login = await http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        expect(login, 200)
    return Account(id=created.json()["id"], token=login.json()["accessToken"])


async def publish_one(http: httpx.AsyncClient, builder: Account, number: int, gate: asyncio.Semaphore) -> str:
    headers = {"Authorization": f"Bearer {builder.token}"}
    async with gate:
        project = await http.post("/api/projects", json={"name": f"Bench app {number}"}, headers=headers)
        expect(project, 201)
        project_id = project.json()["id"]
        for status in ("in_development", "ready"):
            moved = await http.put(
                f"/api/projects/{project_id}/status", json={"status": status}, headers=headers
            )
            expect(moved, 200)
        listing = await http.post(
            f"/api/marketplace/projects/{project_id}/publish",
            json={
                "priceMinor": 500 + 100 * number,
                "currency": "usd",
                "description": f"Benchmark chat app number {number}.",
                "category": CATEGORIES[number % len(CATEGORIES)],
                "tags": ["bench"],
            },
            headers=headers,
        )
        expect(listing, 201)
    return str(project_id)


async def build_world(api: str, args: argparse.Namespace) -> tuple[list[str], list[list[Account]]]:
    """Builders with one listing each, and two cohorts of buyers. Sign-ups and logins hash
    passwords (argon2, ~170 ms), so they go a few at a time."""
    gate = asyncio.Semaphore(4)
    async with httpx.AsyncClient(base_url=api, timeout=120) as http:
        builders = await asyncio.gather(*(sign_up(http, "builder", gate) for _ in range(args.builders)))
        projects = await asyncio.gather(
            *(publish_one(http, builder, number, gate) for number, builder in enumerate(builders))
        )
        buyers = await asyncio.gather(*(sign_up(http, "end_user", gate) for _ in range(2 * args.buyers)))
    return list(projects), [list(buyers[: args.buyers]), list(buyers[args.buyers :])]


def expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}"
        )


# --- the storms -------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    latency: float


def purchase_request(host: str, port: int, buyer: Account, project_id: str, key: str) -> bytes:
    body = json.dumps({"projectId": project_id}).encode()
    head = (
        f"POST /api/marketplace/purchase HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {buyer.token}\r\nIdempotency-Key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def fire_at_once(host: str, port: int, requests: list[bytes]) -> tuple[list[Answer], float]:
    """One connection per request: open them all, then send every request together. Returns the
    answers in request order and the seconds from the release to the last answer."""
    opened = await asyncio.gather(*(asyncio.open_connection(host, port) for _ in requests))
    release = asyncio.Event()

    async def one(request: bytes, stream: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> Answer:
        reader, writer = stream
        await release.wait()
        started = time.perf_counter()
        try:
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=120)
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if length is None:
                raise RuntimeError(f"response without Content-Length: {head!r}")
            body = await reader.readexactly(int(length.group(1)))
            return Answer(int(head[9:12]), json.loads(body), time.perf_counter() - started)
        finally:
            writer.close()
            await writer.wait_closed()

    tasks = [
        asyncio.create_task(one(request, stream)) for request, stream in zip(requests, opened, strict=True)
    ]
    await asyncio.sleep(0)
    started = time.perf_counter()
    release.set()
    answers = await asyncio.gather(*tasks)
    return answers, time.perf_counter() - started


class WaitSampler:
    """Samples ``pg_stat_activity`` of the bench database every few milliseconds in a thread:
    what its active connections wait on (a lock, and which statement; or nothing: running)."""

    def __init__(self, database_url: str, interval: float = 0.01) -> None:
        self._url = database_url
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.samples: Counter[str] = Counter()

    def __enter__(self) -> "WaitSampler":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def shares(self, top: int = 6) -> dict[str, float]:
        total = sum(self.samples.values()) or 1
        return {what: count / total for what, count in self.samples.most_common(top)}

    def _run(self) -> None:
        query = (
            "SELECT coalesce(wait_event_type || ':' || wait_event, 'running'), "
            "regexp_replace(left(query, 60), '\\s+', ' ', 'g') FROM pg_stat_activity "
            "WHERE datname = %s AND state = 'active' AND pid <> pg_backend_pid()"
        )
        with psycopg.connect(self._url, autocommit=True) as conn:
            while not self._stop.is_set():
                for wait, statement in conn.execute(query, (DATABASE,)).fetchall():
                    self.samples[f"{wait} {statement}" if wait.startswith("Lock") else wait] += 1
                time.sleep(self._interval)


def run_storm(
    name: str,
    api_pid: int,
    host: str,
    port: int,
    requests: list[bytes],
    purchases: int,
    database_url: str,
    *,
    one_at_a_time: bool = False,
) -> tuple[Storm, list[Answer]]:
    meter = CpuMeter(api_pid)
    with WaitSampler(database_url) as sampler:
        if one_at_a_time:
            answers, seconds = [], 0.0
            for request in requests:
                [answer], elapsed = asyncio.run(fire_at_once(host, port, [request]))
                answers.append(answer)
                seconds += elapsed
        else:
            answers, seconds = asyncio.run(fire_at_once(host, port, requests))
    server_cpu, client_cpu = meter.shares(seconds)
    latencies = [a.latency for a in answers]
    storm = Storm(
        name=name,
        concurrent=not one_at_a_time,
        requests=len(requests),
        purchases=purchases,
        seconds=seconds,
        statuses=dict(sorted(Counter(a.status for a in answers).items())),
        p50_ms=percentile(latencies, 0.5) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
        max_ms=max(latencies) * 1000,
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        waits=sampler.shares(),
    )
    return storm, answers


def plan_purchases(projects: list[str], buyers: list[Account], per_buyer: int) -> list[tuple[Account, str]]:
    """Buyer j buys ``per_buyer`` consecutive listings starting at its own offset, so every listing
    is bought by about as many buyers as any other."""
    return [
        (buyer, projects[(j * per_buyer + k) % len(projects)])
        for j, buyer in enumerate(buyers)
        for k in range(per_buyer)
    ]


def plan_before_storm(
    projects: list[str], buyers: list[Account], per_buyer: int, count: int
) -> list[tuple[Account, str]]:
    """``count`` purchases by the storm's buyers of listings their storm does not touch: buyer j
    takes the listings right after its ``per_buyer`` ones."""
    plan = []
    for i in range(count):
        j, extra = i % len(buyers), i // len(buyers)
        plan.append((buyers[j], projects[(j * per_buyer + per_buyer + extra) % len(projects)]))
    return plan


def check_storm(storm: Storm, answers: list[Answer], duplicates: bool) -> list[Check]:
    if not duplicates:
        bad = [a for a in answers if a.status != 201 or a.body.get("status") != "completed"]
        return [Check(f"{storm.name}: every purchase answered 201 completed", not bad, describe(bad))]
    checks = []
    pairs = list(zip(answers[0::2], answers[1::2], strict=True))
    bad = [p for p in pairs if sorted(a.status for a in p) != [200, 201]]
    checks.append(Check(f"{storm.name}: every pair answered one 201 and one 200", not bad, describe(bad)))
    split = [p for p in pairs if p[0].body.get("id") != p[1].body.get("id")]
    checks.append(
        Check(f"{storm.name}: both answers of a pair are the same purchase", not split, describe(split))
    )
    return checks


def describe(failures: list[Any]) -> str:
    return f"{len(failures)} failed, e.g. {failures[0]}" if failures else ""


# --- the baseline -----------------------------------------------------------------------------


def measure_baselines(api: str, api_pid: int, args: argparse.Namespace, report: Report) -> None:
    for name, path in (("browse", "/api/marketplace/projects"), ("healthz", "/healthz")):
        meter = CpuMeter(api_pid)
        measure = run_async_client(f"{api}{path}", {}, args.baseline_requests, args.baseline_concurrency)
        measure.server_cpu, measure.client_cpu = meter.shares(measure.seconds)
        if measure.errors:
            raise RuntimeError(f"{path}: {measure.errors} failed requests of {measure.requests}")
        report.baselines[name].append(measure)
        print(
            f"baseline {name:<8} {measure.rps:7.0f} req/s  p50 {measure.p50_ms:7.2f} ms  "
            f"p99 {measure.p99_ms:7.2f} ms  ({measure.requests} requests, {args.baseline_concurrency} "
            f"connections; cpu server {measure.server_cpu:.2f} client {measure.client_cpu:.2f})"
        )


# --- what the database says -------------------------------------------------------------------

SQL_CHECKS: list[tuple[str, str, str]] = [
    # name, query returning one number, what it must be ("expected" is filled in per run)
    ("purchases", "SELECT count(*) FROM purchases", "purchases"),
    ("completed purchases", "SELECT count(*) FROM purchases WHERE status = 'completed'", "purchases"),
    (
        "buyer-listing pairs bought more than once",
        "SELECT count(*) FROM (SELECT 1 FROM purchases GROUP BY user_id, listing_id HAVING count(*) > 1) d",
        "zero",
    ),
    ("payments", "SELECT count(*) FROM payments WHERE purchase_id IS NOT NULL", "purchases"),
    (
        "purchases without exactly one succeeded payment",
        "SELECT count(*) FROM purchases p WHERE (SELECT count(*) FROM payments y "
        "WHERE y.purchase_id = p.id AND y.status = 'succeeded') <> 1",
        "zero",
    ),
    (
        "settlement transactions",
        "SELECT count(*) FROM ledger_transactions WHERE kind = 'settlement'",
        "purchases",
    ),
    (
        "completed purchases without exactly one settlement",
        "SELECT count(*) FROM purchases p WHERE p.status = 'completed' AND (SELECT count(*) "
        "FROM ledger_transactions t WHERE t.kind = 'settlement' AND t.reference = 'purchase:' || p.id) <> 1",
        "zero",
    ),
    (
        "ledger transactions that do not sum to zero",
        "SELECT count(*) FROM (SELECT 1 FROM ledger_entries GROUP BY transaction_id, currency "
        "HAVING sum(amount_minor) <> 0) u",
        "zero",
    ),
    (
        "settlements whose gross leg is not the purchase amount",
        "SELECT count(*) FROM purchases p JOIN ledger_entries e ON e.purchase_id = p.id AND e.leg = 'gross' "
        "WHERE e.amount_minor <> p.amount_minor",
        "zero",
    ),
    (
        "listings whose purchase count is not their purchases",
        "SELECT count(*) FROM listings l WHERE l.purchase_count <> (SELECT count(*) FROM purchases p "
        "WHERE p.listing_id = l.id AND p.status = 'completed')",
        "zero",
    ),
    (
        "paid purchase invoices",
        "SELECT count(*) FROM invoices WHERE kind = 'purchase' AND status = 'paid'",
        "purchases",
    ),
    (
        "gaps or repeats in invoice numbers",
        "SELECT count(*) - count(DISTINCT number) + (max(split_part(number, '-', 3)::int) "
        "- min(split_part(number, '-', 3)::int) + 1 - count(*)) FROM invoices",
        "zero",
    ),
    (
        "purchase.completed events",
        "SELECT count(*) FROM outbox_events WHERE type = 'purchase.completed'",
        "purchases",
    ),
    (
        "sum of purchase.completed grossMinor minus sum of settlement gross legs",
        "SELECT (SELECT coalesce(sum((payload->>'grossMinor')::bigint), 0) FROM outbox_events "
        "WHERE type = 'purchase.completed') - (SELECT coalesce(sum(e.amount_minor), 0) "
        "FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id "
        "WHERE t.kind = 'settlement' AND e.leg = 'gross')",
        "zero",
    ),
]


def check_database(database_url: str, purchases: int) -> list[Check]:
    checks = []
    with psycopg.connect(database_url) as conn:
        for name, query, want in SQL_CHECKS:
            row = conn.execute(query).fetchone()
            value = int(row[0]) if row and row[0] is not None else 0
            expected = purchases if want == "purchases" else 0
            checks.append(Check(f"db: {name} = {expected}", value == expected, f"found {value}"))
    return checks


def check_ledger_invariants(database_url: str) -> list[Check]:
    """``bazaar ledger check``'s invariants, when the revenue domain provides them."""
    try:
        from app.revenue.service import check_ledger
    except ImportError:
        return [Check("bazaar ledger check: not available in this version (SQL checks above only)", True)]
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from app.core.db import async_url

    async def run() -> list[Check]:
        engine = create_async_engine(async_url(database_url))
        try:
            async with AsyncSession(engine) as db:
                results = await check_ledger(db)
        finally:
            await engine.dispose()
        return [Check(f"ledger check: {r.name}", r.ok, r.line()) for r in results]

    return asyncio.run(run())


# --- main -------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    if not services_answer():
        return 2
    use_redis = reachable(6379)
    per_storm = args.buyers * args.per_buyer
    print_machine()
    print(
        f"world: {args.builders} builders with one listing each, 2 cohorts of {args.buyers} buyers "
        f"buying {args.per_buyer} listings each ({per_storm} purchases per storm)"
    )
    print(f"redis: {REDIS_URL if use_redis else 'not answering: in-process fallback'}")

    report = Report()
    with (
        bench_database(DATABASE, REDIS_PREFIX, use_redis=use_redis) as database_url,
        tempfile.TemporaryDirectory(prefix="bazaar-bench-purchases-") as logs,
        stopped_at_exit() as servers,
    ):
        server = start_api("api", server_env(database_url, use_redis), Path(logs))
        servers.append(server)
        wait_ready(server)
        api, pid, port = server.url, server.process.pid, server.port

        started = time.perf_counter()
        projects, cohorts = asyncio.run(build_world(api, args))
        print(f"set-up through the API: {time.perf_counter() - started:.1f} s")
        measure_baselines(api, pid, args, report)

        first = cohorts[0]
        alone = plan_before_storm(projects, first, args.per_buyer, args.sequential)
        requests = [purchase_request(HOST, port, b, p, secrets.token_hex(8)) for b, p in alone]
        storm, answers = run_storm(
            "one at a time", pid, HOST, port, requests, len(alone), database_url, one_at_a_time=True
        )
        report.storms.append(storm)
        report.checks += check_storm(storm, answers, duplicates=False)
        print_storm(storm)

        plain = plan_purchases(projects, first, args.per_buyer)
        requests = [purchase_request(HOST, port, b, p, secrets.token_hex(8)) for b, p in plain]
        storm, answers = run_storm("storm", pid, HOST, port, requests, per_storm, database_url)
        report.storms.append(storm)
        report.checks += check_storm(storm, answers, duplicates=False)
        print_storm(storm)
        measure_baselines(api, pid, args, report)

        twice = []
        for buyer, project in plan_purchases(projects, cohorts[1], args.per_buyer):
            request = purchase_request(HOST, port, buyer, project, secrets.token_hex(8))
            twice += [request, request]
        storm, answers = run_storm("duplicate storm", pid, HOST, port, twice, per_storm, database_url)
        report.storms.append(storm)
        report.checks += check_storm(storm, answers, duplicates=True)
        print_storm(storm)
        measure_baselines(api, pid, args, report)

        ensure_running(servers)
        if not all(check.ok for check in report.checks):
            print_server_errors(server)
        report.checks += check_database(database_url, 2 * per_storm + args.sequential)
        report.checks += check_ledger_invariants(database_url)

    return summarize(report, args)


def print_server_errors(server: Server) -> None:
    """The distinct errors the API logged (last line of each traceback), most frequent first."""
    server.log.flush()
    errors: Counter[str] = Counter()
    for line in server.log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("logger") == "bazaar.errors" and record.get("exc"):
            errors[str(record["exc"]).strip().splitlines()[-1][:300]] += 1
    for message, count in errors.most_common(5):
        print(f"API error x{count}: {message}")


def print_storm(storm: Storm) -> None:
    print(
        f"{storm.name:<16} {storm.purchases} purchases, {storm.requests} requests "
        f"{'at once' if storm.concurrent else 'one after another'}, "
        f"{storm.seconds:.2f} s: {storm.purchases_per_s:.1f} purchases/s; latency p50 {storm.p50_ms:.0f} ms "
        f"p99 {storm.p99_ms:.0f} ms max {storm.max_ms:.0f} ms; answers {storm.statuses}; "
        f"cpu server {storm.server_cpu:.2f} client {storm.client_cpu:.2f}"
    )
    for what, share in storm.waits.items():
        print(f"    {share:6.1%} of database connection samples: {what}")


def summarize(report: Report, args: argparse.Namespace) -> int:
    browse = statistics.median(m.rps for m in report.baselines["browse"])
    healthz = statistics.median(m.rps for m in report.baselines["healthz"])
    print()
    print(f"GET /api/marketplace/projects  {browse:7.0f} req/s (median of {len(report.baselines['browse'])})")
    print(
        f"GET /healthz                   {healthz:7.0f} req/s (median of {len(report.baselines['healthz'])})"
    )
    for storm in report.storms:
        print(
            f"{storm.name:<16} {storm.purchases_per_s:7.1f} purchases/s = "
            f"{storm.purchases_per_s / browse:.3f} x browse, "
            f"{storm.purchases_per_s / healthz:.4f} x healthz; "
            f"p50 {storm.p50_ms:.0f} ms, p99 {storm.p99_ms:.0f} ms"
        )
    print()
    for check in report.checks:
        print(f"{'OK  ' if check.ok else 'FAIL'}  {check.name}{'' if check.ok else ': ' + check.detail}")
    print(f"{load_average()} after the run")

    write_results(
        "purchases",
        {
            "args": vars(args),
            "storms": [{**asdict(s), "purchases_per_s": s.purchases_per_s} for s in report.storms],
            "baselines": {name: [asdict(m) for m in runs] for name, runs in report.baselines.items()},
            "browse_rps": browse,
            "healthz_rps": healthz,
            "checks": [asdict(c) for c in report.checks],
        },
    )
    failed = [c for c in report.checks if not c.ok]
    if failed:
        print(f"{len(failed)} checks FAILED", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
