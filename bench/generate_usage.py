"""Realistic widget usage beacons, until the widget runtime produces real ones.

Shape of the traffic (all deterministic for a seed, vectorised with polars, ~10M rows in seconds):

* ``widgets`` widgets, four per project, one owning end user per two widgets; popularity is
  skewed (a few widgets get most of the traffic: index = widgets × u², u uniform);
* each widget has its own pool of visitors; a visitor has up to 3 sessions a day; about a fifth
  of the visitors are signed-in customers of the host site;
* kinds: 60 % impressions, 15 % opens, 12.5 % messages, 12.5 % tokens (one tokens event per
  message, 50–1,549 tokens); messages carry a latency (time to first token, 150–3,149 ms);
* ``received_at`` spread uniformly over the last ``days`` days; ``client_ts`` a little earlier
  (browser clocks), missing on 5 % of beacons;
* ``duplicate_fraction`` of the beacons are sent twice with the same ``event_id`` (client
  retries), which dbt must remove.

Two ways out: ``--redis`` appends them to the usage stream as the API would (``XADD``, field
``b``), ``--parquet`` writes landing files directly (one per landing day, ``landed_at`` just after
the day's last beacon) for pipeline benchmarks that do not need the consumer.

    .venv/bin/python bench/generate_usage.py --rows 1000000 --parquet --warehouse-dir /tmp/wh
    .venv/bin/python bench/generate_usage.py --rows 100000 --redis redis://127.0.0.1:6379/0
"""

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import redis

from app.core.usage import STREAM_FIELD
from app.core.warehouse_layout import WarehouseLayout
from app.worker.landing import land_frame

_U32 = float(2**32)


def _uniform(seed: int, salt: int) -> pl.Expr:
    """A uniform [0, 1) column: the row index hashed (polars has no vectorised RNG expression)."""
    return (pl.int_range(pl.len(), dtype=pl.UInt64).hash(seed * 1_000_003 + salt) % 2**32) / _U32


def _bucket(seed: int, salt: int, n: int) -> pl.Expr:
    return (_uniform(seed, salt) * n).floor().cast(pl.Int64)


def _uuid_text(prefix: str, index: pl.Expr) -> pl.Expr:
    return pl.format(prefix + "{}", index.cast(pl.String).str.zfill(12))


def generate_usage(
    rows: int,
    *,
    days: int = 7,
    widgets: int = 400,
    visitors_per_widget: int = 500,
    duplicate_fraction: float = 0.0,
    seed: int = 1,
    now: datetime | None = None,
) -> pl.DataFrame:
    """``rows`` beacons (plus duplicates) with the columns of ``app.core.usage.UsageBeacon``."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    span_us = days * 86_400_000_000
    frame = pl.select(pl.int_range(rows, dtype=pl.Int64).alias("i"))
    frame = frame.with_columns(
        widget=(_uniform(seed, 1).pow(2) * widgets).floor().cast(pl.Int64),
        visitor=_bucket(seed, 2, visitors_per_widget),
        kind_u=_uniform(seed, 3),
        ago_us=(_uniform(seed, 4) * span_us).cast(pl.Int64),
        skew_us=(_uniform(seed, 5) * 2_000_000).cast(pl.Int64),
        session_of_day=_bucket(seed, 6, 3),
        size=_bucket(seed, 7, 1500),
        latency=_bucket(seed, 8, 3000),
        no_client_ts=_uniform(seed, 9) < 0.05,
    )
    received = pl.lit(now, dtype=pl.Datetime("us", "UTC")) - pl.duration(microseconds=pl.col("ago_us"))
    kind = (
        pl.when(pl.col("kind_u") < 0.6)
        .then(pl.lit("impression"))
        .when(pl.col("kind_u") < 0.75)
        .then(pl.lit("open"))
        .when(pl.col("kind_u") < 0.875)
        .then(pl.lit("message"))
        .otherwise(pl.lit("tokens"))
    )
    visitor_key = pl.format("{}-{}", pl.col("widget"), pl.col("visitor"))
    frame = frame.with_columns(received_at=received, kind=kind).select(
        event_id=pl.format("g{}-{}", pl.lit(seed), pl.col("i").cast(pl.String).str.zfill(10)),
        widget_id=_uuid_text("00000000-0000-4000-8000-", pl.col("widget")),
        project_id=_uuid_text("00000000-0000-4000-9000-", pl.col("widget") // 4),
        end_user_id=_uuid_text("00000000-0000-4000-a000-", pl.col("widget") // 2),
        visitor_id=pl.format("v-{}", visitor_key),
        session_id=pl.format(
            "s-{}-{}-{}", visitor_key, pl.col("received_at").dt.date(), pl.col("session_of_day")
        ),
        customer_id=pl.when(pl.col("visitor") % 5 == 0).then(pl.format("c-{}", visitor_key)),
        kind=pl.col("kind"),
        count=pl.when(pl.col("kind") == "tokens").then(pl.col("size") + 50).otherwise(1).cast(pl.Int64),
        latency_ms=pl.when(pl.col("kind") == "message").then(pl.col("latency") + 150).cast(pl.Int32),
        client_ts=pl.when(~pl.col("no_client_ts")).then(
            pl.col("received_at") - pl.duration(microseconds=pl.col("skew_us"))
        ),
        received_at=pl.col("received_at"),
    )
    if duplicate_fraction > 0:
        duplicates = frame.sample(fraction=duplicate_fraction, seed=seed, with_replacement=False)
        # A retry is accepted again a little later: same event_id, later received_at.
        duplicates = duplicates.with_columns(pl.col("received_at") + pl.duration(seconds=3))
        frame = pl.concat([frame, duplicates])
    return frame


def stream_beacons(frame: pl.DataFrame, redis_url: str, stream: str, *, pipeline_size: int = 2000) -> int:
    """XADD every row to ``stream`` as the API does; return how many."""
    text = frame.with_columns(
        pl.col(name).dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ") for name in ("client_ts", "received_at")
    )
    lines = text.write_ndjson().splitlines()
    client = redis.Redis.from_url(redis_url)
    try:
        for start in range(0, len(lines), pipeline_size):
            pipe = client.pipeline(transaction=False)
            for line in lines[start : start + pipeline_size]:
                pipe.xadd(stream, {STREAM_FIELD: line})
            pipe.execute()
    finally:
        client.close()
    return len(lines)


def land_directly(frame: pl.DataFrame, warehouse_dir: Path, *, rows_per_file: int = 1_000_000) -> list[Path]:
    """Write landing files as the consumer would have: by landing day, landed just after."""
    layout = WarehouseLayout(warehouse_dir)
    paths: list[Path] = []
    by_day = frame.with_columns(day=pl.col("received_at").dt.date()).partition_by("day", as_dict=True)
    for _key, day in sorted(by_day.items(), key=lambda item: item[0]):
        day = day.drop("day").sort("received_at")
        for start in range(0, day.height, rows_per_file):
            chunk = day.slice(start, rows_per_file)
            landed_at = chunk["received_at"].max() + timedelta(seconds=1)  # type: ignore[operator]
            paths.append(land_frame(layout, "usage", chunk, landed_at))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--widgets", type=int, default=400)
    parser.add_argument("--duplicates", type=float, default=0.0, help="fraction sent twice (0..1)")
    parser.add_argument("--seed", type=int, default=1)
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--redis", metavar="URL", help="XADD into the usage stream of this Redis")
    out.add_argument("--parquet", action="store_true", help="write landing Parquet directly")
    parser.add_argument(
        "--stream", default="bazaar:usage", help="stream key with --redis (REDIS_PREFIX + usage)"
    )
    parser.add_argument("--warehouse-dir", type=Path, default=Path("warehouse"))
    args = parser.parse_args()

    started = time.perf_counter()
    frame = generate_usage(
        args.rows, days=args.days, widgets=args.widgets, duplicate_fraction=args.duplicates, seed=args.seed
    )
    generated = time.perf_counter()
    print(f"generated {frame.height:,} beacons in {generated - started:.2f} s")
    if args.redis:
        count = stream_beacons(frame, args.redis, args.stream)
        print(f"XADDed {count:,} entries to {args.stream} in {time.perf_counter() - generated:.2f} s")
    else:
        paths = land_directly(frame, args.warehouse_dir)
        took = time.perf_counter() - generated
        print(f"landed {len(paths)} files under {args.warehouse_dir}/landing/usage in {took:.2f} s")


if __name__ == "__main__":
    main()
