"""Compaction: fewer landing files, every row kept, files the worker just wrote left alone."""

import os
from datetime import UTC, datetime, timedelta

import polars as pl

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
