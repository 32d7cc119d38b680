"""Freshness: from a usage beacon accepted by the API to its numbers on the analytics endpoint,
under the default schedule (see bench/README.md).

Starts the stack as ``bazaar dev`` does, on a bench database ``bazaar_bench_freshness``, Redis
keys under ``bazaar-bench-freshness:`` and a temporary ``WAREHOUSE_DIR`` and ``DAGSTER_HOME``
(``pipelines/dagster.yaml`` copied in): ``bazaar serve``, ``bazaar worker`` (outbox relay and the
Redis usage consumer) and ``dagster-daemon run -m pipelines.definitions`` (the refresh sensor,
looking every 5 s and starting a refresh at most every ``WAREHOUSE_REFRESH_SECONDS``, default 30;
the queued run coordinator; the Dagster UI is not started, it plays no part in freshness).
Before that it lands ``--beacons`` generated beacons and the marketplace's domain events
(``bench/pipeline.py``) so each refresh builds a warehouse of a realistic size, and waits for
Dagster's first run to publish.

Then, for ``--minutes``, every 10-20 s (random) a probe: a batch of ``--batch`` message beacons
of a new widget id, accepted through ``app.core.usage.publish_usage`` (what the API's
track-usage endpoint calls: XADD to the usage stream, ``received_at`` stamped now). Each probe's
widget is polled once a second on ``GET /api/analytics/widgets/<id>`` as a super admin (with
the default response cache) until the endpoint reports all its messages; the latency is from
the publish to that answer. Prints p50/p95/max over the probes (target p95 < 90 s), the
Dagster warehouse runs' durations split into phases (queue, run process start, compaction, dbt,
publish) from the instance's event log, and the CPU seconds the Dagster processes used per run
(the machine is shared: CPU time says what a run costs when wall time is stretched by others'
load), then stops everything and cleans up.

    .venv/bin/python bench/freshness.py                  # 8 minutes of probes over 1M beacons
    .venv/bin/python bench/freshness.py --minutes 3 --beacons 100k
"""

import argparse
import asyncio
import os
import random
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Run as a script, bench/ is not a package: the project root on sys.path makes ``bench.*``.
from app.core.config import Settings  # noqa: E402
from app.core.usage import UsageBeacon, publish_usage  # noqa: E402
from app.core.warehouse_layout import WarehouseLayout  # noqa: E402
from bench.common import load_average, log_in, print_machine, write_results  # noqa: E402
from bench.pipeline import human, land_base, parse_size  # noqa: E402
from bench.servers import (  # noqa: E402
    BAZAAR,
    BIN,
    REDIS_URL,
    Server,
    api_env,
    bench_database,
    create_admin,
    ensure_running,
    services_answer,
    start,
    start_api,
    stopped_at_exit,
    wait_ready,
)
from pipelines.sensors import TICK_SECONDS  # noqa: E402

DATABASE = "bazaar_bench_freshness"
REDIS_PREFIX = "bazaar-bench-freshness:"
PASSWORD = "bench-password-" + secrets.token_hex(4)
ADMIN_EMAIL = "admin@bench.example"
TARGET_P95_SECONDS = 90.0
IDLE_SECONDS = 20.0
ENDED = {"SUCCESS", "FAILURE", "CANCELED"}


@dataclass
class Probe:
    widget_id: str
    sent_at: float  # time.time() when publish_usage returned
    seen_at: float | None = None
    version: str | None = None  # the warehouse version that first showed it

    @property
    def latency(self) -> float | None:
        return None if self.seen_at is None else self.seen_at - self.sent_at


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=8.0, help="minutes of probes (default 8)")
    parser.add_argument("--beacons", type=parse_size, default=1_000_000, help="landed first (default 1M)")
    parser.add_argument("--purchases", type=int, default=3000, help="purchases landed first (default 3000)")
    parser.add_argument("--batch", type=int, default=5, help="message beacons per probe (default 5)")
    parser.add_argument("--min-gap", type=float, default=10.0, help="seconds between probes, at least")
    parser.add_argument("--max-gap", type=float, default=20.0, help="seconds between probes, at most")
    parser.add_argument(
        "--wait", type=float, default=300.0, help="seconds a probe may take before it counts as missing"
    )
    args = parser.parse_args()
    if not 0 < args.min_gap <= args.max_gap:
        parser.error("need 0 < --min-gap <= --max-gap")
    return args


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


def probe_beacons(widget_id: str, count: int) -> list[UsageBeacon]:
    now = datetime.now(UTC)
    return [
        UsageBeacon(
            event_id=f"fresh-{uuid.uuid4().hex}",
            widget_id=widget_id,
            project_id="00000000-0000-4000-9000-999999999999",
            end_user_id="00000000-0000-4000-a000-999999999999",
            visitor_id=f"v-{widget_id}",
            session_id=f"s-{widget_id}",
            kind="message",
            count=1,
            latency_ms=400,
            client_ts=now,
            received_at=now,
        )
        for _ in range(count)
    ]


async def run_probes(
    args: argparse.Namespace, settings: Settings, api: str, auth: dict[str, str]
) -> list[Probe]:
    """Publish a probe every 10-20 s for ``--minutes``; poll each until it shows or times out."""
    client = aioredis.Redis.from_url(REDIS_URL)
    probes: list[Probe] = []
    pending: list[Probe] = []
    errors: list[str] = []
    deadline = time.monotonic() + args.minutes * 60
    next_probe = time.monotonic()
    today = datetime.now(UTC).date()
    # The run may cross midnight UTC: a range around today.
    period = {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1))}
    try:
        async with httpx.AsyncClient(base_url=api, headers=auth, timeout=30) as http:

            async def poll(probe: Probe) -> None:
                response = await http.get(f"/api/analytics/widgets/{probe.widget_id}", params=period)
                if response.status_code != 200:
                    # Counted and shown, not fatal: the probe is polled again a second later.
                    errors.append(f"{response.status_code} {response.text[:200]}")
                    if len(errors) == 1:
                        print(f"  widget analytics answered {errors[0]}", flush=True)
                    return
                body = response.json()
                if body["usage"]["messages"] >= args.batch:
                    probe.seen_at = time.time()
                    probe.version = (body.get("warehouse") or {}).get("version")
                    print(
                        f"  probe {probes.index(probe) + 1:>3} seen after {probe.latency:6.1f} s "
                        f"(version {probe.version}; {load_average()})",
                        flush=True,
                    )

            while time.monotonic() < deadline or pending:
                now = time.monotonic()
                if now < deadline and now >= next_probe:
                    probe = Probe(str(uuid.uuid4()), 0.0)
                    await publish_usage(
                        probe_beacons(probe.widget_id, args.batch), settings=settings, redis=client
                    )
                    probe.sent_at = time.time()
                    probes.append(probe)
                    pending.append(probe)
                    next_probe = now + random.uniform(args.min_gap, args.max_gap)
                await asyncio.gather(*(poll(p) for p in pending))
                for probe in list(pending):
                    if probe.seen_at is not None:
                        pending.remove(probe)
                    elif time.time() - probe.sent_at > args.wait:
                        print(
                            f"  probe {probes.index(probe) + 1} not seen within {args.wait:.0f} s", flush=True
                        )
                        pending.remove(probe)
                await asyncio.sleep(1.0)
    finally:
        await client.aclose()
    if errors:
        print(f"  {len(errors)} polls answered an error; the last: {errors[-1]}")
    return probes


# A run's phases, from its event log: (name, from event, to event). Steps are keyed by name.
PHASES = (
    ("queued", "created", "RUN_STARTING"),  # in the queue, then the launcher's call
    ("process", "RUN_STARTING", "RUN_START"),  # the run's process starts and loads the code
    ("compaction", "STEP_START:landing", "STEP_SUCCESS:landing"),
    ("dbt", "STEP_START:warehouse_models", "STEP_SUCCESS:warehouse_models"),
    ("publish", "STEP_START:served_marts", "STEP_SUCCESS:served_marts"),
    ("total", "created", "RUN_SUCCESS"),  # what a beacon waiting for this run waits at most
)


def run_phases(instance: object, run_id: str, created: float) -> dict[str, float | None]:
    """Seconds per phase of one run (None when an event is missing, e.g. a failed run)."""
    import dagster as dg

    moments: dict[str, float] = {"created": created}
    for entry in instance.all_logs(run_id):  # type: ignore[attr-defined]
        event = entry.dagster_event
        if event is None:
            continue
        name = event.event_type.name  # the enum's name: its value is still PIPELINE_* for runs
        if event.step_key:
            name = f"{name}:{event.step_key}"
        if event.event_type in (
            dg.DagsterEventType.RUN_STARTING,
            dg.DagsterEventType.RUN_START,
            dg.DagsterEventType.RUN_SUCCESS,
            dg.DagsterEventType.STEP_START,
            dg.DagsterEventType.STEP_SUCCESS,
        ):
            moments.setdefault(name, entry.timestamp)
    return {
        phase: (moments[end] - moments[start]) if start in moments and end in moments else None
        for phase, start, end in PHASES
    }


def warehouse_runs(dagster_home: Path) -> list[dict[str, object]]:
    """The Dagster instance's warehouse runs: status, seconds from start to end, phases."""
    import dagster as dg

    from pipelines.jobs import WAREHOUSE_RUN_TAG

    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    try:
        with dg.DagsterInstance.get() as instance:
            records = instance.get_run_records(filters=dg.RunsFilter(tags={WAREHOUSE_RUN_TAG: "true"}))
            runs = []
            for record in sorted(records, key=lambda r: r.create_timestamp):
                start_time, end_time = record.start_time, record.end_time
                created = record.create_timestamp.timestamp()
                runs.append(
                    {
                        "run_id": record.dagster_run.run_id,
                        "status": record.dagster_run.status.value,
                        "created": created,
                        "queued_s": (start_time - created) if start_time else None,
                        "seconds": (end_time - start_time) if start_time and end_time else None,
                        "phases": run_phases(instance, record.dagster_run.run_id, created),
                    }
                )
            return runs
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous


def tree_cpu_seconds(root_pid: int) -> float:
    """CPU seconds of a process and all its descendants, the finished ones included (a reaped
    child's time is in its parent's ``cutime``): what the Dagster daemon, its code server, the
    runs and their dbt processes have used."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        times[pid] = sum(int(value) for value in fields[11:15]) / ticks  # utime stime cutime cstime
    total, frontier = 0.0, [root_pid]
    while frontier:
        pid = frontier.pop()
        total += times.get(pid, 0.0)
        frontier.extend(child for child, parent in parents.items() if parent == pid)
    return total


def idle_cpu_rate(daemon_pid: int, dagster_home: Path, timeout: float = 180.0) -> float | None:
    """CPU seconds per second the daemon and its code server use with nothing to build (sensor
    ticks, the run queue, heartbeats), measured over ``IDLE_SECONDS`` once the last warehouse run
    has ended and while none starts; None when runs kept coming for ``timeout``. Subtracted from
    the CPU used while probing, it leaves what the runs cost."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(run["status"] in ENDED for run in warehouse_runs(dagster_home)):
            started, before = time.time(), tree_cpu_seconds(daemon_pid)
            time.sleep(IDLE_SECONDS)
            used, seconds = tree_cpu_seconds(daemon_pid) - before, time.time() - started
            runs = warehouse_runs(dagster_home)
            if all(run["status"] in ENDED and float(run["created"]) < started for run in runs):  # type: ignore[arg-type]
                return used / seconds
        time.sleep(2)
    return None


def wait_for_publish(layout: WarehouseLayout, daemon: Server, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = layout.current_version()
        if version is not None:
            return version
        if daemon.process.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited:\n{daemon.tail()}")
        time.sleep(1)
    raise RuntimeError(f"nothing published within {timeout:.0f} s:\n{daemon.tail()}")


def main() -> int:
    args = parse_args()
    # A plain kill (SIGTERM) still runs the clean-up in the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not services_answer(redis_required=True):
        return 2
    print_machine()
    workdir = Path(tempfile.mkdtemp(prefix="bazaar-bench-freshness-"))
    warehouse, dagster_home, logs = workdir / "warehouse", workdir / "dagster", workdir / "logs"
    for folder in (warehouse, dagster_home, logs):
        folder.mkdir()
    shutil.copyfile(ROOT / "pipelines" / "dagster.yaml", dagster_home / "dagster.yaml")
    layout = WarehouseLayout(warehouse)
    probes: list[Probe] = []
    runs: list[dict[str, object]] = []
    first_version = ""
    dagster_cpu, probing_started, probing_seconds = 0.0, time.time(), 0.0
    idle_rate: float | None = None
    try:
        started = time.perf_counter()
        beacons, events = land_base(warehouse, args.beacons, purchases=args.purchases, now=datetime.now(UTC))
        took = time.perf_counter() - started
        print(f"landed {beacons:,} beacons and {events:,} domain events in {took:.1f} s")

        with (
            bench_database(DATABASE, REDIS_PREFIX, use_redis=True) as database_url,
            stopped_at_exit() as servers,
        ):
            env = {
                **api_env(database_url, REDIS_PREFIX, use_redis=True),
                "WAREHOUSE_DIR": str(warehouse),
                "DAGSTER_HOME": str(dagster_home),
                "LOG_LEVEL": "INFO",
            }
            for name in ("WAREHOUSE_REFRESH_SECONDS", "ANALYTICS_CACHE_TTL_SECONDS", "LANDING_FLUSH_SECONDS"):
                env.pop(name, None)  # the defaults are what is measured
            settings = Settings(redis_url=REDIS_URL, redis_prefix=REDIS_PREFIX, _env_file=None)  # type: ignore[call-arg]
            create_admin(env, ADMIN_EMAIL, PASSWORD)
            api_server = start_api("api", env, logs, workers=None)
            servers.append(api_server)
            servers.append(start("worker", [BAZAAR, "worker"], env, logs))
            # Dagster shuts its code servers and runs down on SIGINT (as `bazaar dev` stops it).
            daemon = start(
                "dagster-daemon",
                [str(BIN / "dagster-daemon"), "run", "-m", "pipelines.definitions"],
                env,
                logs,
                stop_signal=signal.SIGINT,
                stop_timeout=30,
            )
            servers.append(daemon)
            api = api_server.url
            wait_ready(api_server, timeout=240)
            print(
                f"stack up: API {api}, worker, dagster-daemon (sensor every {TICK_SECONDS} s, a "
                f"refresh at most every {settings.warehouse_refresh_seconds} s); "
                "waiting for Dagster's first warehouse run to publish ...",
                flush=True,
            )
            first_version = wait_for_publish(layout, daemon, timeout=900)
            print(
                f"first publish {first_version} after {time.perf_counter() - started:.0f} s; {load_average()}"
            )
            with httpx.Client(base_url=api, timeout=30) as http:
                auth = log_in(http, ADMIN_EMAIL, PASSWORD)
            print(
                f"probing for {args.minutes:g} minutes, a batch of {args.batch} messages every "
                f"{args.min_gap:g}-{args.max_gap:g} s",
                flush=True,
            )
            cpu_before, probing_started = tree_cpu_seconds(daemon.process.pid), time.time()
            probes = asyncio.run(run_probes(args, settings, api, auth))
            dagster_cpu = tree_cpu_seconds(daemon.process.pid) - cpu_before
            probing_seconds = time.time() - probing_started
            idle_rate = idle_cpu_rate(daemon.process.pid, dagster_home)
            if any(p.seen_at is None for p in probes):
                print(f"API log (last lines):\n{api_server.tail(15)}")
            ensure_running(servers)
            runs = warehouse_runs(dagster_home)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    latencies = [p.latency for p in probes if p.latency is not None]
    missing = len(probes) - len(latencies)
    successful = [r for r in runs if r["status"] == "SUCCESS" and r["seconds"] is not None]
    durations = [float(r["seconds"]) for r in successful]  # type: ignore[arg-type]
    interval = settings.warehouse_refresh_seconds
    print()
    print(
        f"{human(args.beacons)} beacons landed first; sensor every {TICK_SECONDS} s, a refresh at "
        f"most every {interval} s; landing flush {settings.landing_flush_seconds:g} s"
    )
    if durations:
        run_median = statistics.median(durations)
        spread = f"median {run_median:.1f} s, min {min(durations):.1f} s, max {max(durations):.1f} s"
    else:
        run_median, spread = 0.0, "n/a"
    statuses = ", ".join(
        f"{sum(1 for r in runs if r['status'] == status)} {status.lower()}"
        for status in sorted({str(r["status"]) for r in runs})
    )
    print(f"warehouse runs: {len(runs)} ({statuses}); run duration {spread}")
    # The runs during the probes (the first run built the landed base).
    probed = [
        r
        for r in successful
        if probing_started <= float(r["created"]) <= probing_started + probing_seconds  # type: ignore[arg-type]
    ]
    if probed:
        medians = []
        for phase, _start, _end in PHASES:
            values = [r["phases"][phase] for r in probed if r["phases"].get(phase) is not None]  # type: ignore[index,union-attr]
            if values:
                medians.append(f"{phase} {statistics.median(values):.1f}")  # type: ignore[arg-type]
        print(f"  medians over the {len(probed)} runs during the probes, s: {', '.join(medians)}")
        if idle_rate is None:
            print(f"  Dagster's processes used {dagster_cpu:.0f} CPU-s in {probing_seconds:.0f} s of probes")
        else:
            idle = idle_rate * probing_seconds
            print(
                f"  Dagster's processes used {dagster_cpu:.0f} CPU-s in {probing_seconds:.0f} s of "
                f"probes, {idle:.0f} of them at their idle rate ({idle_rate:.3f} CPU-s/s): "
                f"{(dagster_cpu - idle) / len(probed):.1f} CPU-s per run"
            )
    if latencies:
        p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
        verdict = "meets" if p95 < TARGET_P95_SECONDS and not missing else "MISSES"
        print(
            f"freshness over {len(latencies)} probes ({missing} missing): p50 {p50:.1f} s, "
            f"p95 {p95:.1f} s, max {max(latencies):.1f} s"
        )
        print(f"  {verdict} the target p95 < {TARGET_P95_SECONDS:.0f} s")
        if durations:
            print(f"  p50 / median run = {p50 / run_median:.2f}")
    else:
        print(f"no probe was seen ({missing} missing)")
    print(f"{load_average()} after the run")

    write_results(
        "freshness",
        {
            "beacons": args.beacons,
            "sensor_tick_s": TICK_SECONDS,
            "refresh_interval_s": settings.warehouse_refresh_seconds,
            "dagster_cpu_s_while_probing": dagster_cpu,
            "probing_s": probing_seconds,
            "dagster_idle_cpu_s_per_s": idle_rate,
            "first_version": first_version,
            "probes": [asdict(p) for p in probes],
            "runs": runs,
        },
    )
    return 0 if latencies and not missing and percentile(latencies, 0.95) < TARGET_P95_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
