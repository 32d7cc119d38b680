"""Publishing: a new read-only version per build, `serve/current` flipped atomically, old ones pruned.

The build file here is made by hand (what dbt leaves in build/warehouse.duckdb), so these tests
say what the API and analysts can rely on without waiting for a dbt build.
"""

import os
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from app.core.warehouse_layout import WarehouseLayout
from pipelines.publish import NothingToPublishError, prune_versions, publish_marts, published_versions

LANDED = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def build_marts(layout: WarehouseLayout, *, revenue_rows: int = 2) -> None:
    layout.build_file.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(layout.build_file)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS marts; CREATE SCHEMA IF NOT EXISTS staging")
        con.execute(
            "CREATE OR REPLACE TABLE marts.revenue_daily AS "
            "SELECT DATE '2026-03-01' + i::INTEGER AS day, 'usd' AS currency, 1000 * i AS gross_minor "
            f"FROM range({revenue_rows}) t(i)"
        )
        con.execute("CREATE OR REPLACE VIEW marts.dim_projects AS SELECT 'p1' AS project_id")
        con.execute(
            "CREATE OR REPLACE TABLE staging.stg_events AS SELECT ?::TIMESTAMPTZ AS landed_at", [LANDED]
        )


def read_current(layout: WarehouseLayout, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(layout.current_link / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_publish_serves_every_mart_with_its_version_and_freshness(layout):
    build_marts(layout)

    version = publish_marts(layout, run_id="run-1", keep=3)

    assert os.readlink(layout.current_link) == version  # relative: the tree can move
    assert layout.current_version() == version
    assert read_current(layout, "SELECT count(*) FROM marts.revenue_daily") == [(2,)]
    assert read_current(layout, "SELECT project_id FROM marts.dim_projects") == [("p1",)]
    [(meta_version, published_at, as_of, run_id)] = read_current(layout, "SELECT * FROM marts.serve_meta")
    assert (meta_version, as_of, run_id) == (version, LANDED, "run-1")
    assert abs((datetime.now(UTC) - published_at).total_seconds()) < 60
    # Only marts are served: staging stays in the build file.
    assert read_current(layout, "SELECT DISTINCT schema_name FROM duckdb_tables()") == [("marts",)]


def test_each_publish_is_a_new_version_and_old_ones_beyond_keep_are_deleted(layout):
    build_marts(layout, revenue_rows=1)
    first = publish_marts(layout, keep=2)
    build_marts(layout, revenue_rows=2)
    second = publish_marts(layout, keep=2)
    build_marts(layout, revenue_rows=3)
    third = publish_marts(layout, keep=2)

    assert len({first, second, third}) == 3
    assert published_versions(layout) == [second, third]
    assert not layout.version_dir(first).exists()
    assert layout.current_version() == third
    assert read_current(layout, "SELECT count(*) FROM marts.revenue_daily") == [(3,)]
    with duckdb.connect(str(layout.served_file(second)), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM marts.revenue_daily").fetchone() == (2,)
    assert sorted(p.name for p in layout.serve.iterdir()) == sorted([second, third, "current"])


def test_a_reader_of_the_served_version_keeps_reading_while_a_new_one_is_published(layout):
    build_marts(layout, revenue_rows=1)
    first = publish_marts(layout, keep=2)
    reader = duckdb.connect(str(layout.served_file(first)), read_only=True)
    try:
        build_marts(layout, revenue_rows=5)  # dbt rebuilds: the served file is not touched
        publish_marts(layout, keep=2)
        publish_marts(layout, keep=2)  # first is now beyond keep and deleted under the reader
        assert not layout.version_dir(first).exists()
        assert reader.execute("SELECT count(*) FROM marts.revenue_daily").fetchone() == (1,)
    finally:
        reader.close()
    assert read_current(layout, "SELECT count(*) FROM marts.revenue_daily") == [(5,)]


def test_the_current_version_is_never_pruned_even_when_newer_ones_exist(layout):
    build_marts(layout)
    kept = publish_marts(layout, keep=2)
    newer = [publish_marts(layout, keep=10) for _ in range(3)]
    # An operator points current back at an older version (a rollback), then a publish prunes.
    tmp = layout.serve / "rollback"
    os.symlink(kept, tmp)
    os.replace(tmp, layout.current_link)
    prune_versions(layout, keep=2)
    assert layout.version_dir(kept).exists()
    assert published_versions(layout) == [kept, *newer[-2:]]


def test_nothing_is_published_before_dbt_has_built_marts(layout):
    with pytest.raises(NothingToPublishError):
        publish_marts(layout, keep=2)
    layout.build_file.parent.mkdir(parents=True)
    duckdb.connect(str(layout.build_file)).close()
    with pytest.raises(NothingToPublishError):
        publish_marts(layout, keep=2)
    assert layout.current_version() is None
    assert [p.name for p in layout.serve.iterdir()] == []  # no half-written version left behind


def test_as_of_is_null_when_the_build_has_no_landed_rows(tmp_path: Path):
    layout = WarehouseLayout(tmp_path)
    layout.build_file.parent.mkdir(parents=True)
    with duckdb.connect(str(layout.build_file)) as con:
        con.execute("CREATE SCHEMA marts; CREATE TABLE marts.leaderboards (board VARCHAR)")
    publish_marts(layout, keep=2)
    assert read_current(layout, "SELECT as_of FROM marts.serve_meta") == [(None,)]
