"""Warehouse build time for 1M and 10M usage beacons, full and incremental (see bench/README.md).

For each size, in a temporary warehouse (``WAREHOUSE_DIR``):

1. lands ``size`` generated usage beacons (``bench/generate_usage.py``, 1 % client retries,
   spread over the 7 days before yesterday, one Parquet file per landing day) and a small
   marketplace told as domain events (users, projects, listings, ``--purchases`` purchases with
   their ledger legs, refunds, logins, payouts) into ``landing/``;
2. **baseline**: a plain DuckDB ``SELECT count(DISTINCT event_id)`` over the same usage Parquet,
   the floor any build pays (read every beacon once and deduplicate it);
3. **full**: ``pipelines.build.build_warehouse(full_refresh=True)``: compaction, ``dbt build
   --full-refresh`` (models and tests), publish;
4. lands one more day: 1 % more beacons and a few purchases (landed today);
5. **incremental**: ``build_warehouse()``, as the Dagster sensor's run does;
6. the baseline again over everything landed; ratios use the median of the baselines.

Target: the 10M full build under 2 minutes on the 2-core development machine. Prints each
phase (compaction, dbt, publish) and the slowest dbt nodes, writes the figures to
``bench/results/pipeline-<UTC time>.json`` and deletes the warehouse.

    .venv/bin/python bench/pipeline.py                  # 1M and 10M
    .venv/bin/python bench/pipeline.py --sizes 1M       # a quick run
"""

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Run as a script, bench/ is not a package: the project root on sys.path makes ``bench.*``.
from app.core.warehouse_layout import WarehouseLayout  # noqa: E402
from app.worker.landing import land_frame  # noqa: E402
from bench.generate_usage import generate_usage, land_directly  # noqa: E402
from pipelines.build import build_warehouse  # noqa: E402
from pipelines.dbt_project import dbt_target_path, ensure_manifest  # noqa: E402
from pipelines.resources import WarehouseResource  # noqa: E402

# The event payloads of docs/events.md as the warehouse tests write them (one source of truth).
from tests.warehouse.landing import Listing, Story, uid  # noqa: E402

TARGET_FULL_SECONDS = 120.0
DAYS = 7
WIDGETS = 400  # four per project: 100 projects, as bench/generate_usage.py numbers them
DUPLICATES = 0.01
# One landing file per day: the build is measured, not compaction of the generator's chunks.
ROWS_PER_FILE = 1_000_000_000


@dataclass
class Build:
    kind: str  # full | incremental
    seconds: float
    compaction_s: float
    dbt_s: float
    publish_s: float
    version: str
    cpu_s: float = 0.0  # CPU seconds of this process and dbt's: steadier than wall time when shared
    nodes: list[tuple[str, float]] = field(default_factory=list)  # slowest dbt nodes first
    # From the invocation's dbt.log and run_results.json (None when not found):
    dbt_startup_s: float | None = None  # process start and imports, until dbt's first log line
    dbt_parse_s: float | None = None  # first log line until the run starts (parse, graph)
    dbt_run_s: float | None = None  # run_results elapsed_time: models and tests
    models_s: float | None = None  # sum of the models' execution times
    tests_s: float | None = None  # sum of the tests' (data and unit) execution times
    dbt_nodes: dict[str, int] = field(default_factory=dict)  # nodes run, by type (model, test, ...)
    partial_parse: bool | None = None  # whether dbt reused the previous build's parse


@dataclass
class SizeResult:
    size: int
    beacons_landed: int
    domain_events: int
    increment_beacons: int
    land_seconds: float
    baselines: list[float]
    full: Build
    incremental: Build

    @property
    def baseline(self) -> float:
        return statistics.median(self.baselines)


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1M, 500k, 2000000)")
    factor = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    return int(float(match.group(1)) * factor)


def human(size: int) -> str:
    if size % 1_000_000 == 0:
        return f"{size // 1_000_000}M"
    if size % 1_000 == 0:
        return f"{size // 1_000}k"
    return str(size)


def load_average() -> str:
    try:
        return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "load average unknown"


def machine_note() -> str:
    return f"{os.cpu_count()} CPUs, Python {platform.python_version()}, duckdb {duckdb.__version__}"


# --- landing -------------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    """The naive ISO text ``tests.warehouse.landing.at`` reads back as UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def _project_id(index: int) -> str:
    return f"00000000-0000-4000-9000-{index:012d}"  # bench/generate_usage.py's project ids


def marketplace_story(
    start: datetime, end: datetime, *, purchases: int, projects: int = WIDGETS // 4, seed: int = 1
) -> Story:
    """Builders, their projects (the usage generator's project ids) and listings on day one, then
    ``purchases`` purchases spread over [start, end), every 20th refunded, logins, and a payout
    per builder at the end."""
    story = Story()
    span = (end - start).total_seconds()
    builders = max(1, projects // 2)
    buyers = max(10, purchases // 3)
    if seed == 1:
        story.user_created("admin", ["super_admin"], _iso(start), signup=False)
        for b in range(builders):
            story.user_created(f"builder-{b}", ["builder"], _iso(start + timedelta(seconds=b)))
        for u in range(buyers):
            story.user_created(f"buyer-{u}", ["end_user"], _iso(start + timedelta(seconds=60 + u)))
    listings: list[Listing] = []
    for p in range(projects):
        builder = f"builder-{p % builders}"
        price = 500 + (p * 137) % 4500  # 5.00 .. 49.99
        listing = Listing(uid(f"listing-{p}"), _project_id(p), uid(builder), price)
        listings.append(listing)
        if seed != 1:
            continue
        when = _iso(start + timedelta(minutes=30, seconds=p))
        story.event(
            "project.created",
            when,
            {"ownerId": uid(builder), "name": f"Project {p}", "llm": None, "status": "draft"},
            actor=uid(builder),
            subject=listing.project_id,
        )
        story.event(
            "listing.published",
            when,
            {
                "listingId": listing.listing_id,
                "projectId": listing.project_id,
                "builderId": listing.builder_id,
                "status": "active",
                "priceMinor": price,
                "currency": "usd",
                "category": "customer-support",
            },
            actor=uid(builder),
            subject=listing.listing_id,
        )
    for n in range(purchases):
        when = _iso(start + timedelta(seconds=3600 + (span - 7200) * ((n * 7919) % purchases) / purchases))
        buyer = f"buyer-{(n * 31) % buyers}"
        listing = listings[(n * 13) % len(listings)]
        purchase = f"purchase-{seed}-{n}"
        story.sale(purchase, listing, buyer, when)
        story.login(buyer, "end_user", when)
        if n % 20 == 0:
            story.refund(purchase, listing, buyer, "admin", when)
    if seed == 1:
        for b in range(builders):
            story.payout(
                f"payout-{b}", f"builder-{b}", 1000 + b, _iso(end - timedelta(hours=2)), _iso(end), b % 7 != 0
            )
    return story


def land_events(layout: WarehouseLayout, story: Story) -> int:
    """The story's domain events as landing/events files, one per UTC day of occurrence."""
    frame = pl.DataFrame(
        story.events,
        schema={
            "event_id": pl.String,
            "type": pl.String,
            "schema_version": pl.Int16,
            "occurred_at": pl.Datetime("us", "UTC"),
            "actor_id": pl.String,
            "subject_id": pl.String,
            "payload": pl.String,
        },
        orient="row",
    )
    days = frame.with_columns(day=pl.col("occurred_at").dt.date()).partition_by("day", as_dict=True)
    for _key, day in sorted(days.items(), key=lambda item: item[0]):
        landed_at = day["occurred_at"].max() + timedelta(seconds=1)  # type: ignore[operator]
        land_frame(layout, "events", day.drop("day"), landed_at)
    return frame.height


def land_base(root: Path, size: int, *, purchases: int, now: datetime) -> tuple[int, int]:
    """``size`` beacons (+1 % retries) over the 7 days before ``now`` and the marketplace's events."""
    frame = generate_usage(size, days=DAYS, widgets=WIDGETS, duplicate_fraction=DUPLICATES, seed=1, now=now)
    land_directly(frame, root, rows_per_file=ROWS_PER_FILE)
    story = marketplace_story(now - timedelta(days=DAYS), now, purchases=purchases, seed=1)
    return frame.height, land_events(WarehouseLayout(root), story)


def land_increment(root: Path, size: int, *, purchases: int, now: datetime) -> int:
    """One more day: ``size`` beacons over the 24 h before ``now`` and ``purchases`` purchases."""
    frame = generate_usage(size, days=1, widgets=WIDGETS, duplicate_fraction=DUPLICATES, seed=2, now=now)
    land_directly(frame, root, rows_per_file=ROWS_PER_FILE)
    story = marketplace_story(now - timedelta(days=1), now, purchases=purchases, seed=2)
    land_events(WarehouseLayout(root), story)
    return frame.height


# --- measuring ----------------------------------------------------------------------------------


def baseline_scan(root: Path) -> tuple[float, int]:
    """Seconds to read every landed beacon's ``event_id`` once and count the distinct ones, with
    the DuckDB settings of the dbt profile (2 threads)."""
    con = duckdb.connect(config={"threads": 2, "preserve_insertion_order": False})
    try:
        started = time.perf_counter()
        count = con.execute(
            "select count(distinct event_id) from read_parquet(?, hive_partitioning = true)",
            [str(root / "landing" / "usage" / "*" / "*.parquet")],
        ).fetchone()
        return time.perf_counter() - started, int(count[0]) if count else 0
    finally:
        con.close()


_NODE_TIME = re.compile(r"\b(?:model|test|unit_test|seed)\s+(\S+)\s.*\[\w+ in ([\d.]+)s\]")


def cpu_seconds() -> float:
    """CPU time of this process and of its waited-for children (the dbt process)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _rotation(log: Path) -> int:
    """0 for dbt.log, n for dbt.log.n (older)."""
    suffix = log.name.removeprefix("dbt.log").lstrip(".")
    return int(suffix) if suffix.isdigit() else 0


def dbt_breakdown(root: Path, started_at: datetime, full_refresh: bool) -> dict[str, Any]:
    """Where the dbt invocation's time went, from the warehouse's dbt target folder
    (``pipelines.dbt_project.dbt_target_path``, reused by every build): its ``run_results.json``
    when a ``build`` with this ``--full-refresh`` setting wrote it during this build, and the
    lines of that invocation in ``dbt.log`` (JSON, appended by every build)."""
    target = dbt_target_path(WarehouseLayout(root))
    results = target / "run_results.json"
    try:
        if datetime.fromtimestamp(results.stat().st_mtime, UTC) < started_at:
            return {}
        data = json.loads(results.read_text())
        invocation = data["metadata"]["invocation_id"]
        # dbt rotates its log at 10 MB (dbt.log.1 is older than dbt.log): a build's first lines
        # may already be in a rotated file.
        logs = sorted(target.glob("dbt.log*"), key=_rotation, reverse=True)
        log_lines = [
            line
            for path in logs
            for line in (json.loads(text) for text in path.read_text().splitlines() if text)
            if line["info"].get("invocation_id") == invocation
        ]
    except (OSError, ValueError, KeyError):
        return {}
    if (
        not log_lines
        or data.get("args", {}).get("which") != "build"
        or bool(data["args"].get("full_refresh")) != full_refresh
    ):
        return {}
    stamps = {line["info"]["name"]: _ts(line["info"]["ts"]) for line in reversed(log_lines)}
    first = _ts(log_lines[0]["info"]["ts"])
    run_started = stamps.get("ConcurrencyLine", first)
    by_type: dict[str, float] = {}
    for node in data["results"]:
        kind = node["unique_id"].split(".", 1)[0]
        by_type[kind] = by_type.get(kind, 0.0) + node["execution_time"]
    return {
        "dbt_startup_s": (first - started_at).total_seconds(),
        "dbt_parse_s": (run_started - first).total_seconds(),
        "dbt_run_s": float(data["elapsed_time"]),
        "models_s": by_type.get("model", 0.0),
        "tests_s": by_type.get("test", 0.0) + by_type.get("unit_test", 0.0),
        "dbt_nodes": {
            kind: sum(1 for n in data["results"] if n["unique_id"].startswith(kind + ".")) for kind in by_type
        },
        "partial_parse": not any(line["info"]["name"] == "UnableToPartialParse" for line in log_lines),
    }


def timed_build(root: Path, *, full_refresh: bool, verbose: bool) -> Build:
    """``build_warehouse`` in this process; phases from the moments its progress lines appear."""
    marks: list[tuple[float, str]] = []

    def echo(line: str) -> None:
        marks.append((time.perf_counter(), line))
        if verbose:
            print(f"      {line.strip()}", flush=True)

    resource = WarehouseResource(root=str(root), keep_versions=3)
    started, started_at, cpu_started = time.perf_counter(), datetime.now(UTC), cpu_seconds()
    version = build_warehouse(resource, full_refresh=full_refresh, echo=echo)
    finished, cpu = time.perf_counter(), cpu_seconds() - cpu_started
    dbt_started_at = started_at + timedelta(
        seconds=next((t for t, line in marks if line.strip().startswith("[2/3]")), started) - started
    )
    breakdown = dbt_breakdown(root, dbt_started_at, full_refresh)

    def first(prefix: str, default: float) -> float:
        return next((t for t, line in marks if line.strip().startswith(prefix)), default)

    compacted = first("[1/3]", started)
    dbt_started = first("[2/3]", compacted)
    # dbt's last line is its summary ("Done. PASS=..."); publishing follows.
    dbt_done = max((t for t, line in marks if "Done. PASS=" in line), default=finished)
    nodes: dict[str, float] = {}
    for _t, line in marks:
        match = _NODE_TIME.search(line)
        if match:
            nodes[match.group(1)] = max(nodes.get(match.group(1), 0.0), float(match.group(2)))
    return Build(
        kind="full" if full_refresh else "incremental",
        seconds=finished - started,
        compaction_s=compacted - started,
        dbt_s=dbt_done - dbt_started,
        publish_s=finished - dbt_done,
        version=version,
        cpu_s=cpu,
        nodes=sorted(nodes.items(), key=lambda item: -item[1]),
        **breakdown,
    )


def print_build(label: str, build: Build, baseline: float, top: int) -> None:
    target = ""
    if build.kind == "full":
        verdict = "meets" if build.seconds <= TARGET_FULL_SECONDS else "MISSES"
        target = f"; {verdict} the {TARGET_FULL_SECONDS:.0f} s target"
    print(
        f"{label:<16} {build.seconds:7.1f} s = {build.seconds / baseline:6.1f} x baseline "
        f"(compaction {build.compaction_s:.1f} s, dbt {build.dbt_s:.1f} s, "
        f"publish {build.publish_s:.1f} s; {build.cpu_s:.0f} CPU-s){target}"
    )
    if build.dbt_run_s is not None:
        nodes = ", ".join(f"{count} {kind}s" for kind, count in build.dbt_nodes.items())
        parse = "partial" if build.partial_parse else "full"
        print(
            f"{'':<18}dbt: startup {build.dbt_startup_s:.1f} s, parse {build.dbt_parse_s:.1f} s ({parse}), "
            f"run {build.dbt_run_s:.1f} s (summed over 2 threads: models {build.models_s:.1f} s, "
            f"tests {build.tests_s:.1f} s; {nodes})"
        )
    for name, seconds in build.nodes[:top]:
        print(f"{'':<18}{seconds:6.1f} s  {name}")


def run_size(size: int, args: argparse.Namespace, workdir: Path) -> SizeResult:
    root = workdir / f"warehouse-{human(size)}"
    root.mkdir()
    now = datetime.now(UTC).replace(microsecond=0)
    yesterday = now - timedelta(days=1)
    print(f"== {human(size)} beacons: {load_average()}", flush=True)
    started = time.perf_counter()
    beacons, events = land_base(root, size, purchases=args.purchases, now=yesterday)
    land_seconds = time.perf_counter() - started
    print(
        f"landed {beacons:,} beacons ({beacons - size:,} retries) and {events:,} domain events "
        f"in {land_seconds:.1f} s",
        flush=True,
    )
    baselines: list[float] = []
    seconds, distinct = baseline_scan(root)
    baselines.append(seconds)
    print(f"baseline scan    {seconds:7.2f} s  ({distinct:,} distinct event ids)", flush=True)

    print("full build (build_warehouse full_refresh=True) ...", flush=True)
    full = timed_build(root, full_refresh=True, verbose=args.verbose)
    print(f"full build       {full.seconds:7.1f} s  -> {full.version}", flush=True)

    increment = max(1, size // 100)
    added = land_increment(root, increment, purchases=max(1, args.purchases // DAYS), now=now)
    print(f"landed one more day: {added:,} beacons", flush=True)
    print("incremental build (build_warehouse) ...", flush=True)
    incremental = timed_build(root, full_refresh=False, verbose=args.verbose)
    print(f"incremental      {incremental.seconds:7.1f} s  -> {incremental.version}", flush=True)

    seconds, distinct = baseline_scan(root)
    baselines.append(seconds)
    print(f"baseline scan    {seconds:7.2f} s  ({distinct:,} distinct event ids)", flush=True)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return SizeResult(size, beacons, events, added, land_seconds, baselines, full, incremental)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        default="1M,10M",
        type=lambda text: [parse_size(part) for part in text.split(",") if part.strip()],
        help="beacon counts, comma-separated (default 1M,10M)",
    )
    parser.add_argument(
        "--purchases", type=int, default=3000, help="purchases in the base landing (default 3000)"
    )
    parser.add_argument("--top", type=int, default=6, help="slowest dbt nodes printed per build (default 6)")
    parser.add_argument("--verbose", action="store_true", help="print dbt's progress lines")
    parser.add_argument("--keep", action="store_true", help="keep the temporary warehouses (prints where)")
    args = parser.parse_args()
    # A plain kill (SIGTERM) still runs the clean-up in the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not args.sizes or any(size < 1000 for size in args.sizes):
        parser.error("--sizes: at least 1000 beacons each")

    print(f"machine: {machine_note()}; {load_average()} before the run")
    ensure_manifest()  # a stale manifest would make the first build pay for dbt parse
    results: list[SizeResult] = []
    workdir = Path(tempfile.mkdtemp(prefix="bazaar-bench-pipeline-"))
    try:
        for size in args.sizes:
            results.append(run_size(size, args, workdir))
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    for result in results:
        label = human(result.size)
        print(
            f"{label} beacons: baseline scan {result.baseline:.2f} s "
            f"(median of {len(result.baselines)}: {', '.join(f'{b:.2f}' for b in result.baselines)})"
        )
        print_build(f"  {label} full", result.full, result.baseline, args.top)
        print_build(f"  {label} increm.", result.incremental, result.baseline, args.top)
    print(f"{load_average()} after the run")

    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    payload: dict[str, Any] = {
        "at": stamp,
        "machine": machine_note(),
        "load_average_after": load_average(),
        "target_full_seconds": TARGET_FULL_SECONDS,
        "sizes": [{**asdict(r), "baseline": r.baseline} for r in results],
    }
    (out / f"pipeline-{stamp}.json").write_text(json.dumps(payload, indent=2))
    return 0 if all(r.full.seconds <= TARGET_FULL_SECONDS for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
