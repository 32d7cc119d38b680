"""Broadcast delivery: an administrator's broadcast to 10k (and 100k) users, delivered by the real
``bazaar worker``, against a plain bulk INSERT of the same rows in the same run; and the latency
of ``POST /api/notifications/broadcast`` (see bench/README.md, "Notifications").

The API (``bazaar serve``) and the worker (``bazaar worker``) run on a fresh database
``bazaar_bench_notifications`` on the machine's Postgres (127.0.0.1:5432) and Redis
(127.0.0.1:6379, keys under ``bazaar-bench-notifications:``; in-process fallbacks when Redis
does not answer). The audience's end users are inserted with one SQL statement (signing 100k
users up through the API would take hours of password hashing). For each size, rounds alternate:

* ``broadcast``: ``POST /api/notifications/broadcast`` to the ``end_user`` persona (inbox only),
  then ``GET /api/notifications/broadcasts/{id}`` every 50 ms until it is ``done``. The figure is
  the worker's own ``finishedAt - startedAt`` (the job's batches: audience keyset, render,
  preferences, inserts, ``notification.sent`` events, realtime announcements, commits); the time
  from the request to ``done`` as seen by the admin is reported too;
* ``baseline``: what Postgres alone takes to write the same rows: one ``INSERT .. SELECT`` from
  the audience into copies of ``notifications`` and ``outbox_events`` (same columns, indexes and
  unique keys; no foreign keys), in one transaction.

Between rounds it waits until the worker is idle (every event notified and relayed), so rounds
start alike. A last round per size asks for email as well: the worker then also queues one email
and one send job per user (and, on the side, starts sending them to its log); its baseline adds
``email_deliveries`` and ``procrastinate_jobs`` copies. It first times 50 broadcast requests to
a one-user audience one after the other (p50/p99), on an idle worker.

    .venv/bin/python bench/notifications.py --help
"""

import argparse
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Run as a script, bench/ is not a package: the project root on sys.path makes ``bench.*``.
from bench.common import expect, in_turns, log_in, p50_p99, print_machine, write_results  # noqa: E402
from bench.servers import (  # noqa: E402
    BAZAAR,
    api_env,
    bench_database,
    create_admin,
    ensure_running,
    reachable,
    services_answer,
    start,
    start_api,
    stopped_at_exit,
    wait_ready,
)

DATABASE = "bazaar_bench_notifications"
REDIS_PREFIX = "bazaar-bench-notifications:"
PASSWORD = "bench-password-" + secrets.token_hex(4)

# The baseline's tables: copies with the same columns, indexes and unique keys.
COPIES = {
    "bench_notifications": "notifications",
    "bench_outbox": "outbox_events",
    "bench_emails": "email_deliveries",
    "bench_jobs": "procrastinate_jobs",
}
AUDIENCE = "FROM users u JOIN user_roles r ON r.user_id = u.id AND r.role = 'end_user'"
BASELINE_INBOX = [
    f"""INSERT INTO bench_notifications (id, user_id, type, category, title, message, data, created_at,
        broadcast_id)
    SELECT gen_random_uuid(), u.id, 'announcement', 'announcements', 'Maintenance on Sunday',
        'We upgrade at 02:00 UTC.', jsonb_build_object('broadcastId', %(broadcast)s::text), now(),
        %(broadcast)s::uuid
    {AUDIENCE}""",
    f"""INSERT INTO bench_outbox (event_id, type, schema_version, occurred_at, subject_id, payload)
    SELECT gen_random_uuid(), 'notification.sent', 1, now(), u.id::text,
        jsonb_build_object('userId', u.id, 'type', 'announcement', 'category', 'announcements',
                           'channels', jsonb_build_array('in_app'), 'broadcastId', %(broadcast)s::text)
    {AUDIENCE}""",
]
BASELINE_EMAIL = [
    f"""INSERT INTO bench_emails (id, user_id, type, to_address, subject, text_body, html_body,
        message_id, status, attempts, created_at, broadcast_id)
    SELECT gen_random_uuid(), u.id, 'announcement', u.email, 'Maintenance on Sunday',
        'We upgrade at 02:00 UTC.', '<p>We upgrade at 02:00 UTC.</p>', gen_random_uuid()::text,
        'pending', 0, now(), %(broadcast)s::uuid
    {AUDIENCE}""",
    f"""INSERT INTO bench_jobs (queue_name, task_name, args, priority)
    SELECT 'mail', 'notifications.send_email', jsonb_build_object('delivery_id', gen_random_uuid()), 0
    {AUDIENCE}""",
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[10_000, 100_000],
        help="audience sizes (default 10000 100000)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="inbox-only rounds of each kind at the first size (default 3; one at the larger sizes)",
    )
    parser.add_argument(
        "--posts", type=int, default=50, help="timed requests to a one-user audience (default 50)"
    )
    args = parser.parse_args()
    if sorted(args.sizes) != args.sizes or not all(1 <= size <= 1_000_000 for size in args.sizes):
        parser.error("--sizes must be increasing, between 1 and 1,000,000")
    if not 1 <= args.rounds <= 10 or not 1 <= args.posts <= 1000:
        parser.error("--rounds between 1 and 10, --posts between 1 and 1000")
    return args


# --- the database -----------------------------------------------------------------------------


def add_end_users(conn: psycopg.Connection[Any], count: int) -> None:
    conn.execute(
        """
        WITH made AS (
            INSERT INTO users (id, email, name, password_hash, default_persona, status, plan, metadata)
            SELECT gen_random_uuid(), 'bench-' || gen_random_uuid() || '@bench.example', 'Bench user ' || n,
                   'x', 'end_user', 'active', 'free', '{}'::jsonb
            FROM generate_series(1, %(count)s) AS n
            RETURNING id
        )
        INSERT INTO user_roles (user_id, role) SELECT id, 'end_user' FROM made
        """,
        {"count": count},
    )
    conn.commit()


def create_copies(conn: psycopg.Connection[Any]) -> None:
    for copy, table in COPIES.items():
        conn.execute(f"CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)")
    conn.commit()


def baseline(conn: psycopg.Connection[Any], *, email: bool) -> float:
    """Seconds Postgres takes to write a broadcast's rows in one transaction."""
    conn.execute(f"TRUNCATE {', '.join(COPIES)}")
    conn.commit()
    broadcast = str(uuid.uuid4())
    started = time.perf_counter()
    for statement in BASELINE_INBOX + (BASELINE_EMAIL if email else []):
        conn.execute(statement, {"broadcast": broadcast})
    conn.commit()
    return time.perf_counter() - started


def wait_idle(conn: psycopg.Connection[Any], timeout: float = 1800) -> None:
    """Until the worker has notified and relayed every event, and has no broadcast or email job
    left (an earlier round's emails are sent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = conn.execute(
            """SELECT (SELECT count(*) FROM outbox_events WHERE notified_at IS NULL OR relayed_at IS NULL)
                    + (SELECT count(*) FROM procrastinate_jobs
                       WHERE queue_name IN ('notifications', 'mail') AND status IN ('todo', 'doing'))"""
        ).fetchone()
        conn.commit()
        if busy is not None and busy[0] == 0:
            return
        time.sleep(0.2)
    raise RuntimeError("the worker did not become idle")


# --- through the API --------------------------------------------------------------------------


def broadcast(http: httpx.Client, headers: dict[str, str], *, email: bool, size: int) -> dict[str, float]:
    body = {"audience": "end_user", "title": "Maintenance on Sunday", "message": "We upgrade at 02:00 UTC."}
    started = time.perf_counter()
    queued = expect(
        http.post("/api/notifications/broadcast", json={**body, "sendEmail": email}, headers=headers), 202
    )
    request_ms = (time.perf_counter() - started) * 1000
    while True:
        progress = expect(http.get(f"/api/notifications/broadcasts/{queued['id']}", headers=headers), 200)
        if progress["status"] == "done":
            break
        time.sleep(0.05)
    seen = time.perf_counter() - started
    if (progress["total"], progress["delivered"]) != (size, size):
        raise RuntimeError(
            f"broadcast reached {progress['delivered']} of {progress['total']}, expected {size}"
        )
    worker = (
        datetime.fromisoformat(progress["finishedAt"]) - datetime.fromisoformat(progress["startedAt"])
    ).total_seconds()
    return {"worker_seconds": worker, "seen_seconds": seen, "request_ms": request_ms}


def measure_inbox(
    http: httpx.Client, headers: dict[str, str], conn: psycopg.Connection[Any], size: int, rounds: int
) -> dict[str, Any]:
    """Alternating inbox-only rounds of the broadcast and its baseline."""
    runs: dict[str, list[float]] = {"broadcast": [], "baseline": []}
    seen: list[float] = []
    requests: list[float] = []
    for round_no, name in in_turns(["broadcast", "baseline"], rounds):
        wait_idle(conn)
        if name == "broadcast":
            result = broadcast(http, headers, email=False, size=size)
            runs[name].append(result["worker_seconds"])
            seen.append(result["seen_seconds"])
            requests.append(result["request_ms"])
            print(
                f"{size:>7} round {round_no + 1} broadcast: {result['worker_seconds']:.2f} s in the worker "
                f"({size / result['worker_seconds']:,.0f} users/s), done {result['seen_seconds']:.2f} s "
                f"after the request, request {result['request_ms']:.0f} ms"
            )
        else:
            runs[name].append(baseline(conn, email=False))
            print(f"{size:>7} round {round_no + 1} baseline:  {runs[name][-1]:.2f} s")
    worker_s, base_s = statistics.median(runs["broadcast"]), statistics.median(runs["baseline"])
    print(
        f"{size:>7} users, inbox only: {worker_s:.2f} s in the worker (median of {rounds}), "
        f"baseline {base_s:.2f} s, ratio {worker_s / base_s:.1f}x"
    )
    return {
        "worker_seconds": runs["broadcast"],
        "baseline_seconds": runs["baseline"],
        "ratio": worker_s / base_s,
        "users_per_second": size / worker_s,
        "seen_seconds": seen,
        "request_ms": requests,
    }


def measure_with_email(
    http: httpx.Client, headers: dict[str, str], conn: psycopg.Connection[Any], size: int
) -> dict[str, Any]:
    """One broadcast that also queues an email per user, and its baseline."""
    wait_idle(conn)  # the emails of an earlier round sent
    result = broadcast(http, headers, email=True, size=size)
    base_s = baseline(conn, email=True)
    print(
        f"{size:>7} users, with email: {result['worker_seconds']:.2f} s in the worker "
        f"({size / result['worker_seconds']:,.0f} users/s), baseline {base_s:.2f} s, "
        f"ratio {result['worker_seconds'] / base_s:.1f}x"
    )
    return {**result, "baseline_seconds": base_s, "ratio": result["worker_seconds"] / base_s}


def request_latency(http: httpx.Client, headers: dict[str, str], posts: int) -> dict[str, float]:
    """p50/p99 of ``posts`` broadcast requests to a one-user audience, one after the other."""
    latencies = []
    for _ in range(posts):
        started = time.perf_counter()
        body = {"audience": "super_admin", "title": "Ping", "message": "Timing the request."}
        expect(http.post("/api/notifications/broadcast", json=body, headers=headers), 202)
        latencies.append((time.perf_counter() - started) * 1000)
    return p50_p99(latencies)


def main() -> None:
    args = parse_args()
    if not services_answer():
        sys.exit(1)
    use_redis = reachable(6379)
    print_machine()
    print(f"Redis: {'yes' if use_redis else 'no (in-process fallbacks)'}")
    figures: dict[str, Any] = {"redis": use_redis, "sizes": {}}
    with (
        bench_database(DATABASE, REDIS_PREFIX, use_redis=use_redis) as url,
        tempfile.TemporaryDirectory(prefix="bazaar-bench-notifications-") as folder,
        stopped_at_exit() as servers,
        psycopg.connect(url) as conn,
    ):
        env = api_env(url, REDIS_PREFIX, use_redis=use_redis)
        env.update(
            {
                "VAR_DIR": str(Path(folder) / "var"),
                "WAREHOUSE_DIR": str(Path(folder) / "warehouse"),
                "EMAIL_BACKEND": "log",
            }
        )
        api = start_api("api", env, Path(folder))
        servers.append(api)
        servers.append(start("worker", [BAZAAR, "worker"], env, Path(folder)))
        wait_ready(api)
        admin_email = f"bench-admin-{secrets.token_hex(4)}@bench.example"
        create_admin(env, admin_email, PASSWORD)
        create_copies(conn)
        with httpx.Client(base_url=api.url, timeout=60) as http:
            headers = log_in(http, admin_email, PASSWORD)
            wait_idle(conn)
            figures["post_broadcast"] = request_latency(http, headers, args.posts)
            print(
                "POST /api/notifications/broadcast, one-user audience: p50 {p50_ms:.1f} ms, "
                "p99 {p99_ms:.1f} ms".format(**figures["post_broadcast"])
            )
            population = 0
            for index, size in enumerate(args.sizes):
                add_end_users(conn, size - population)
                population = size
                ensure_running(servers)
                rounds = args.rounds if index == 0 else 1
                figures["sizes"][str(size)] = {
                    "inbox": measure_inbox(http, headers, conn, size, rounds),
                    # Last for its size: the worker goes on sending the emails long after.
                    "with_email": measure_with_email(http, headers, conn, size),
                }
            ensure_running(servers)
    print(f"results: {write_results('notifications', figures)}")


if __name__ == "__main__":
    main()
