"""Compaction: fewer landing files, every row kept, files the worker just wrote left alone."""

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from pipelines.compaction import compact_landing
from tests.pipelines.landing_events import Marketplace, write_part


def rows_of(layout, stream):
    files = sorted(layout.landing_stream(stream).glob("dt=*/*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]) if files else pl.DataFrame()


def test_settled_small_files_become_one_file_per_partition_with_every_row(layout):
    market = Marketplace()
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    for i in range(5):
        write_part(layout, "usage", market.messages(3), landed_at=now, age_s=300 + i)
    for _ in range(3):
        write_part(layout, "usage", market.messages(2), landed_at=yesterday, age_s=300)
    write_part(layout, "events", market.sign_ups_and_sale(), landed_at=now, age_s=300)
    before = rows_of(layout, "usage")

    report = compact_landing(layout, settle_seconds=60)

    after = rows_of(layout, "usage")
    assert after.height == before.height == 21
    assert sorted(after["event_id"]) == sorted(before["event_id"])
    assert after.schema == before.schema  # dbt reads the same columns and types
    partitions = sorted(layout.landing_stream("usage").glob("dt=*"))
    assert [len(list(p.glob("*.parquet"))) for p in partitions] == [1, 1]
    assert [f.name.startswith("compacted-") for p in partitions for f in p.glob("*.parquet")] == [True, True]
    # A single file is already compact: the events partition is left as it was.
    assert [f.name[:5] for f in layout.landing_stream("events").glob("dt=*/*.parquet")] == ["part-"]
    assert report.merged_files == 8
    assert report.rows == 21
    assert not list(layout.landing.rglob("*.tmp"))


def test_files_the_worker_just_landed_are_not_compacted(layout):
    market = Marketplace()
    now = datetime.now(UTC)
    old = [write_part(layout, "usage", market.messages(1), landed_at=now, age_s=120) for _ in range(2)]
    fresh = write_part(layout, "usage", market.messages(1), landed_at=now)

    compact_landing(layout, settle_seconds=60)

    assert fresh.exists()
    assert not any(p.exists() for p in old)
    assert len(list(fresh.parent.glob("*.parquet"))) == 2
    assert rows_of(layout, "usage").height == 3


def test_the_daily_full_compaction_folds_a_closed_day_into_a_single_file(layout):
    market = Marketplace()
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    for _ in range(2):
        for _ in range(2):
            write_part(layout, "usage", market.messages(2), landed_at=yesterday, age_s=300)
            write_part(layout, "usage", market.messages(2), landed_at=now, age_s=300)
        compact_landing(layout, settle_seconds=60)  # a near-real-time run: one more compacted file
    day_before = layout.landing_stream("usage") / f"dt={yesterday.date().isoformat()}"
    today = layout.landing_stream("usage") / f"dt={now.date().isoformat()}"
    assert len(list(day_before.glob("*.parquet"))) == 2

    compact_landing(layout, settle_seconds=60, full=True)

    assert len(list(day_before.glob("*.parquet"))) == 1
    # Today is still filling up: its compacted files are not rewritten every run.
    assert len(list(today.glob("*.parquet"))) == 2
    assert rows_of(layout, "usage").height == 16


def test_files_with_a_column_added_later_merge_without_losing_it(layout):
    market = Marketplace()
    now = datetime.now(UTC)
    older = write_part(layout, "usage", market.messages(1), landed_at=now, age_s=300)
    newer = write_part(layout, "usage", market.messages(1), landed_at=now, age_s=200)
    frame = pl.read_parquet(newer).with_columns(pl.lit("fr").alias("locale"))
    frame.write_parquet(newer)
    os.utime(newer, (older.stat().st_mtime, older.stat().st_mtime))

    compact_landing(layout, settle_seconds=60)

    merged = rows_of(layout, "usage")
    assert merged.height == 2
    assert sorted(merged["locale"].fill_null("").to_list()) == ["", "fr"]


def landed_rows(layout, stream):
    return sorted(rows_of(layout, stream).select("event_id", "landed_at").iter_rows())


def test_many_files_are_streamed_into_one_without_reading_the_partition_into_memory(layout, monkeypatch):
    market = Marketplace()
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)
    for i in range(150):
        write_part(layout, "usage", market.messages(2), landed_at=noon + timedelta(seconds=i), age_s=300)
    before = landed_rows(layout, "usage")

    def materializes(*args, **kwargs):
        raise AssertionError("compaction must stream, not read a whole partition into memory")

    # The ways to hold a partition's rows at once: read files whole, concat frames, write a frame.
    monkeypatch.setattr(pl, "read_parquet", materializes)
    monkeypatch.setattr(pl.DataFrame, "write_parquet", materializes)
    concat = pl.concat
    monkeypatch.setattr(
        pl,
        "concat",
        lambda items, **kw: (
            materializes() if any(isinstance(i, pl.DataFrame) for i in items) else concat(items, **kw)
        ),
    )
    report = compact_landing(layout, settle_seconds=60, full=True)
    monkeypatch.undo()

    [partition] = layout.landing_stream("usage").glob("dt=*")
    [compacted] = partition.glob("*.parquet")
    assert compacted.name.startswith("compacted-")
    assert report.merged_files == 150
    assert report.rows == 300
    # Every row, each with the landed_at of the file it came from.
    assert landed_rows(layout, "usage") == before
    assert len({landed_at for _, landed_at in before}) == 150


def test_inputs_are_kept_when_the_written_file_does_not_hold_every_row(layout, monkeypatch):
    import pipelines.compaction as compaction

    market = Marketplace()
    now = datetime.now(UTC)
    parts = [write_part(layout, "usage", market.messages(2), landed_at=now, age_s=300) for _ in range(3)]
    before = landed_rows(layout, "usage")
    count = compaction.parquet_row_count
    # The written file's footer says one row short (a truncated write).
    monkeypatch.setattr(
        compaction, "parquet_row_count", lambda path: count(path) - (path.name.endswith(".tmp"))
    )

    with pytest.raises(RuntimeError, match="5 rows, expected 6"):
        compact_landing(layout, settle_seconds=60)

    assert all(p.exists() for p in parts)
    assert sorted(p.name for p in parts[0].parent.iterdir()) == sorted(p.name for p in parts)
    assert landed_rows(layout, "usage") == before


def test_inputs_are_kept_and_the_temporary_file_removed_when_writing_fails(layout, monkeypatch):
    market = Marketplace()
    now = datetime.now(UTC)
    parts = [write_part(layout, "usage", market.messages(2), landed_at=now, age_s=300) for _ in range(3)]

    def disk_full(self, path, **kwargs):
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pl.LazyFrame, "sink_parquet", disk_full)

    with pytest.raises(OSError, match="No space left"):
        compact_landing(layout, settle_seconds=60)

    assert sorted(p.name for p in parts[0].parent.iterdir()) == sorted(p.name for p in parts)
