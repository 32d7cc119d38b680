"""Merge the worker's small landing files into one file per partition.

The worker lands a file every second or so under load; thousands of tiny Parquet files make every
dbt build slow. Compaction merges the settled files of a ``dt=`` partition into one
``compacted-*.parquet``: streamed (never the whole partition in memory) into a temporary name,
fsynced, its row count checked against the inputs' (Parquet footers), renamed, and only then are
the merged files deleted. A crash at any point leaves every row in at least
one file (at worst twice, which dbt's deduplication on ``event_id`` absorbs).

Files younger than ``settle_seconds`` are left alone: the worker may have just renamed them and
the sensor has not necessarily seen them yet.
"""

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from app.core.warehouse_layout import LANDING_STREAMS, WarehouseLayout
from pipelines.durable import fsync_path

PART_PREFIX = "part-"
COMPACTED_PREFIX = "compacted-"


@dataclass
class PartitionCompaction:
    stream: str
    partition: str
    merged_files: int
    rows: int
    output: str


@dataclass
class CompactionReport:
    partitions: list[PartitionCompaction] = field(default_factory=list)

    @property
    def merged_files(self) -> int:
        return sum(p.merged_files for p in self.partitions)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)


def compact_landing(
    layout: WarehouseLayout, *, settle_seconds: float = 60.0, full: bool = False, now: float | None = None
) -> CompactionReport:
    """Merge every partition's settled ``part-*`` files (two or more) into one new file.

    ``full`` (the daily job) also folds earlier ``compacted-*`` files of the partitions of past
    days into one, so a closed day ends as a single file; today's compacted files are left as they
    are, so a near-real-time run never rewrites the whole day.
    """
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, UTC).date()
    report = CompactionReport()
    for stream in LANDING_STREAMS:
        root = layout.landing_stream(stream)
        if not root.is_dir():
            continue
        for partition in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("dt=")):
            closed_day = full and _day_of(partition) < today
            candidates = [
                f
                for f in sorted(partition.glob("*.parquet"))
                if (f.name.startswith(PART_PREFIX) and _is_settled(f, now, settle_seconds))
                # Only compaction writes compacted files, and only when nothing else writes here.
                or (closed_day and f.name.startswith(COMPACTED_PREFIX))
            ]
            if len(candidates) < 2:
                continue
            result = _merge(partition, candidates)
            report.partitions.append(
                PartitionCompaction(stream, partition.name, len(candidates), result[1], result[0].name)
            )
    return report


def landing_part_files(layout: WarehouseLayout) -> list[Path]:
    """Every file the worker landed that compaction has not merged yet."""
    return [
        path
        for stream in LANDING_STREAMS
        for path in layout.landing_stream(stream).glob(f"dt=*/{PART_PREFIX}*.parquet")
    ]


def _merge(partition: Path, files: list[Path]) -> tuple[Path, int]:
    """Stream ``files`` into one new file, then delete them once it provably holds every row.

    The rows are never all in memory: polars' streaming engine reads the files a batch at a time
    and writes row groups as they fill (a closed day is 10M+ rows; reading it whole ran small hosts
    out of memory). Schemas may grow over time (a nullable column added): the relaxed diagonal
    concat fills missing columns with nulls. Rows are copied as they are, ``landed_at`` included.
    """
    expected_rows = sum(parquet_row_count(f) for f in files)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = partition / f"{COMPACTED_PREFIX}{stamp}-{uuid.uuid4().hex}.parquet"
    temporary = target.with_name(target.name + ".tmp")  # not *.parquet: dbt's glob ignores it
    try:
        merged = pl.concat([pl.scan_parquet(f) for f in files], how="diagonal_relaxed")
        merged.sink_parquet(temporary, compression="zstd", engine="streaming")
        fsync_path(temporary)
        written = parquet_row_count(temporary)
        if written != expected_rows:
            # Never delete inputs whose rows did not all reach the new file.
            raise RuntimeError(f"compacted {target} has {written} rows, expected {expected_rows}")
        temporary.rename(target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_path(partition)
    for f in files:
        f.unlink(missing_ok=True)
    fsync_path(partition)
    return target, expected_rows


def parquet_row_count(path: Path) -> int:
    """Rows of a Parquet file, from its footer (no row is read)."""
    return int(pq.read_metadata(path).num_rows)


def _is_settled(path: Path, now: float, settle_seconds: float) -> bool:
    try:
        return now - path.stat().st_mtime >= settle_seconds
    except FileNotFoundError:
        return False


def _day_of(partition: Path) -> date:
    try:
        return datetime.strptime(partition.name.removeprefix("dt="), "%Y-%m-%d").date()
    except ValueError:
        return datetime.now(UTC).date() + timedelta(days=1)  # unknown: never treated as closed
