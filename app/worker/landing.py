"""Landing files: a batch of events becomes one Parquet file, atomically and durably.

A file is written under a temporary name (``*.parquet.tmp``), fsynced, renamed to its final
name and its folder fsynced. Readers glob ``*/*.parquet``, so they see a whole file or none, and
once ``land_rows`` returns the file survives a crash of the process or of the machine: only then
may the caller acknowledge the events (``docs/data-platform.md``, "Landing").

Entries that cannot be landed because they are malformed go to ``warehouse/rejected/<stream>/``
as JSON lines, written the same way, so acknowledging them never throws anything away silently.
"""

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import polars as pl

from app.core.usage import UsageBeacon
from app.core.warehouse_layout import WarehouseLayout

logger = logging.getLogger("bazaar.landing")

_TIMESTAMP: pl.DataType = pl.Datetime("us", "UTC")

EVENTS_SCHEMA = pl.Schema(
    {
        "event_id": pl.String(),
        "type": pl.String(),
        "schema_version": pl.Int16(),
        "occurred_at": _TIMESTAMP,
        "actor_id": pl.String(),
        "subject_id": pl.String(),
        "payload": pl.String(),
        "landed_at": _TIMESTAMP,
    }
)

USAGE_SCHEMA = pl.Schema(
    {
        "event_id": pl.String(),
        "widget_id": pl.String(),
        "project_id": pl.String(),
        "end_user_id": pl.String(),
        "visitor_id": pl.String(),
        "session_id": pl.String(),
        "customer_id": pl.String(),
        "kind": pl.String(),
        "count": pl.Int64(),
        "latency_ms": pl.Int32(),
        "client_ts": _TIMESTAMP,
        "received_at": _TIMESTAMP,
        "landed_at": _TIMESTAMP,
    }
)

SCHEMAS: Mapping[str, pl.Schema] = {"events": EVENTS_SCHEMA, "usage": USAGE_SCHEMA}
TEMPORARY_SUFFIX = ".tmp"
# A temporary file this old belongs to a writer that died mid-write (none takes seconds).
STALE_TEMPORARY_SECONDS = 3600


def landing_name(landed_at: datetime) -> str:
    """``part-<landed_at>-<uuid>.parquet``: names sort by landing time and never collide."""
    return f"part-{landed_at.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex}.parquet"


def partition_dir(layout: WarehouseLayout, stream: str, landed_at: datetime) -> Path:
    return layout.landing_stream(stream) / f"dt={landed_at.astimezone(UTC):%Y-%m-%d}"


def rejected_dir(layout: WarehouseLayout, stream: str) -> Path:
    layout.landing_stream(stream)  # validates the name
    return layout.root / "rejected" / stream


def land_rows(
    layout: WarehouseLayout, stream: str, rows: Sequence[Mapping[str, Any]], landed_at: datetime
) -> Path | None:
    """Write ``rows`` (each a mapping of the stream's columns but ``landed_at``) as one durable
    Parquet file of partition ``dt`` = ``landed_at``'s UTC date; ``None`` when there are none.

    Blocking (polars and fsync): call it in a worker thread from async code.
    """
    if not rows:
        return None
    schema = SCHEMAS[stream]
    columns = {name: [row.get(name) for row in rows] for name in schema.names() if name != "landed_at"}
    return land_frame(layout, stream, pl.DataFrame(columns, schema=_without_landed_at(schema)), landed_at)


def usage_frame(beacons: Sequence[UsageBeacon]) -> pl.DataFrame:
    """The ``landing/usage`` columns of ``beacons`` but ``landed_at``.

    Built column by column with timestamps as integer microseconds: polars converts aware
    ``datetime`` objects one by one, which was the slowest step of landing a batch.
    """
    columns: dict[str, list[Any]] = {name: [getattr(b, name) for b in beacons] for name in _USAGE_PLAIN}
    for name in _USAGE_TIMESTAMPS:
        columns[name] = [_epoch_us(getattr(b, name)) for b in beacons]
    schema = _without_landed_at(USAGE_SCHEMA)
    frame = pl.DataFrame(
        columns, schema={n: pl.Int64() if n in _USAGE_TIMESTAMPS else t for n, t in schema.items()}
    )
    return frame.with_columns(pl.col(*_USAGE_TIMESTAMPS).cast(_TIMESTAMP))


_USAGE_TIMESTAMPS = ("client_ts", "received_at")
_USAGE_PLAIN = [n for n in USAGE_SCHEMA.names() if n not in (*_USAGE_TIMESTAMPS, "landed_at")]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _epoch_us(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _MICROSECOND


def land_frame(layout: WarehouseLayout, stream: str, frame: pl.DataFrame, landed_at: datetime) -> Path:
    """``land_rows`` for a frame already holding the stream's columns but ``landed_at``
    (bench/generate_usage.py lands millions of rows this way)."""
    schema = SCHEMAS[stream]
    landed_at = landed_at.astimezone(UTC)
    frame = frame.select(
        *[pl.col(name).cast(dtype) for name, dtype in _without_landed_at(schema).items()],
        pl.lit(landed_at, dtype=_TIMESTAMP).alias("landed_at"),
    )
    final = partition_dir(layout, stream, landed_at) / landing_name(landed_at)
    _write_atomically(final, lambda file: frame.write_parquet(file))
    return final


def _without_landed_at(schema: pl.Schema) -> dict[str, pl.DataType]:
    return {name: dtype for name, dtype in schema.items() if name != "landed_at"}


def write_rejected(
    layout: WarehouseLayout, stream: str, records: Iterable[Mapping[str, Any]], landed_at: datetime
) -> Path | None:
    """Keep entries that could not be landed (raw content and the reason) as JSON lines."""
    lines = b"".join(orjson.dumps(record, default=str) + b"\n" for record in records)
    if not lines:
        return None
    landed_at = landed_at.astimezone(UTC)
    folder = rejected_dir(layout, stream) / f"dt={landed_at:%Y-%m-%d}"
    final = folder / landing_name(landed_at).replace(".parquet", ".jsonl")
    _write_atomically(final, lambda file: file.write(lines))
    return final


def sweep_stale_temporaries(
    layout: WarehouseLayout, older_than_seconds: float = STALE_TEMPORARY_SECONDS
) -> int:
    """Delete temporary files left by writers killed mid-write; return how many."""
    cutoff = time.time() - older_than_seconds
    removed = 0
    for root in (layout.landing, layout.root / "rejected"):
        for path in root.glob(f"*/dt=*/*{TEMPORARY_SUFFIX}"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
    if removed:
        logger.info("removed stale temporary landing files", extra={"count": removed})
    return removed


def _write_atomically(final: Path, write: Callable[[BinaryIO], object]) -> None:
    folder = final.parent
    created = []
    for ancestor in (folder, *folder.parents):
        if ancestor.exists():
            break
        created.append(ancestor)
    folder.mkdir(parents=True, exist_ok=True)
    # A new folder's entry must be durable too, or a crash could lose the folder with the file
    # in it: fsync the parent of every folder made here (a fresh warehouse makes landing/,
    # landing/<stream>/ and dt=.../). The dt= folder's parent is always synced, because another
    # writer may have created it a moment ago and not synced it yet.
    for parent in {folder.parent, *(made.parent for made in created)}:
        _fsync_dir(parent)
    temporary = final.with_name(final.name + TEMPORARY_SUFFIX)
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.rename(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
