import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from app.core.warehouse_layout import WarehouseLayout
from app.worker import landing
from app.worker.landing import land_rows, sweep_stale_temporaries
from tests.landing.conftest import landed, make_beacon

LANDED_AT = datetime(2026, 3, 1, 23, 59, 59, 123456, tzinfo=UTC)


def test_a_usage_file_has_the_contract_columns_and_types_under_its_landing_date(tmp_path: Path) -> None:
    layout = WarehouseLayout(tmp_path)
    beacons = [make_beacon(), make_beacon(kind="tokens", count=812, latency_ms=None, client_ts=None)]

    path = land_rows(layout, "usage", [b.model_dump() for b in beacons], LANDED_AT)

    assert path is not None
    assert path.parent == tmp_path / "landing" / "usage" / "dt=2026-03-01"
    assert path.name.startswith("part-20260301T235959123456Z-")
    assert path.suffix == ".parquet"
    with duckdb.connect() as con:
        columns = con.execute(
            f"DESCRIBE SELECT * FROM read_parquet('{path}', hive_partitioning = false)"
        ).fetchall()
    assert [(c[0], c[1]) for c in columns] == [
        ("event_id", "VARCHAR"),
        ("widget_id", "VARCHAR"),
        ("project_id", "VARCHAR"),
        ("end_user_id", "VARCHAR"),
        ("visitor_id", "VARCHAR"),
        ("session_id", "VARCHAR"),
        ("customer_id", "VARCHAR"),
        ("kind", "VARCHAR"),
        ("count", "BIGINT"),
        ("latency_ms", "INTEGER"),
        ("client_ts", "TIMESTAMP WITH TIME ZONE"),
        ("received_at", "TIMESTAMP WITH TIME ZONE"),
        ("landed_at", "TIMESTAMP WITH TIME ZONE"),
    ]
    rows = landed(
        tmp_path, "usage", "SELECT event_id, kind, count, latency_ms, client_ts, landed_at, dt FROM landed"
    )
    by_id = {row[0]: row for row in rows}
    tokens = by_id[beacons[1].event_id]
    assert tokens[1:5] == ("tokens", 812, None, None)
    message = by_id[beacons[0].event_id]
    assert message[4] == beacons[0].client_ts
    assert {row[5] for row in rows} == {LANDED_AT}
    assert {str(row[6]) for row in rows} == {"2026-03-01"}


def test_an_events_file_has_the_envelope_columns(tmp_path: Path) -> None:
    row = {
        "event_id": "0190f3a0-0000-7000-8000-000000000001",
        "type": "purchase.completed",
        "schema_version": 1,
        "occurred_at": LANDED_AT - timedelta(minutes=1),
        "actor_id": None,
        "subject_id": "p-1",
        "payload": '{"grossMinor": 1000}',
    }

    path = land_rows(WarehouseLayout(tmp_path), "events", [row], LANDED_AT)

    with duckdb.connect() as con:
        types = {
            c[0]: c[1]
            for c in con.execute(
                f"DESCRIBE SELECT * FROM read_parquet('{path}', hive_partitioning = false)"
            ).fetchall()
        }
    assert types == {
        "event_id": "VARCHAR",
        "type": "VARCHAR",
        "schema_version": "SMALLINT",
        "occurred_at": "TIMESTAMP WITH TIME ZONE",
        "actor_id": "VARCHAR",
        "subject_id": "VARCHAR",
        "payload": "VARCHAR",
        "landed_at": "TIMESTAMP WITH TIME ZONE",
    }


def test_nothing_to_land_writes_no_file(tmp_path: Path) -> None:
    assert land_rows(WarehouseLayout(tmp_path), "usage", [], LANDED_AT) is None
    assert not list(tmp_path.rglob("*.parquet"))


def test_a_reader_globbing_the_landing_folder_never_meets_a_partial_file(tmp_path: Path) -> None:
    layout = WarehouseLayout(tmp_path)
    rows = [make_beacon().model_dump() for _ in range(3000)]
    done = threading.Event()
    reads: list[int] = []
    errors: list[Exception] = []

    def read_continuously() -> None:
        with duckdb.connect() as con:
            while not done.is_set():
                for path in (tmp_path / "landing" / "usage").glob("*/*.parquet"):
                    try:
                        reads.append(
                            con.execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0]
                        )
                    except Exception as exc:  # a torn file would fail here
                        errors.append(exc)

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        for _ in range(20):
            land_rows(layout, "usage", rows, datetime.now(UTC))
    finally:
        done.set()
        reader.join()

    assert errors == []
    assert reads
    assert set(reads) == {3000}


def test_a_write_that_fails_leaves_neither_a_file_nor_a_temporary(tmp_path: Path) -> None:
    final = tmp_path / "landing" / "usage" / "dt=2026-03-01" / "part-x.parquet"

    def write_half_then_fail(file) -> None:
        file.write(b"PAR1 half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        landing._write_atomically(final, write_half_then_fail)

    assert list(final.parent.iterdir()) == []


def test_sweep_removes_temporaries_of_dead_writers_and_keeps_fresh_ones(tmp_path: Path) -> None:
    folder = tmp_path / "landing" / "usage" / "dt=2026-03-01"
    folder.mkdir(parents=True)
    stale = folder / "part-a.parquet.tmp"
    fresh = folder / "part-b.parquet.tmp"
    kept = folder / "part-c.parquet"
    for path in (stale, fresh, kept):
        path.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))

    assert sweep_stale_temporaries(WarehouseLayout(tmp_path)) == 1

    assert sorted(p.name for p in folder.iterdir()) == ["part-b.parquet.tmp", "part-c.parquet"]
