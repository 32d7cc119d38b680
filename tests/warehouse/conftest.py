"""Run the dbt project (dbt/) in-process against a temporary warehouse.

dbt reads WAREHOUSE_DIR when it renders the profile and the sources, so every run sets it for
its own duration. Its artifacts go under the temporary warehouse, never into dbt/target,
which the Dagster pipeline and other runs use.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from dbt.adapters.duckdb.connections import DuckDBConnectionManager
from dbt.cli.main import dbtRunner, dbtRunnerResult

from app.core.warehouse_layout import WarehouseLayout
from pipelines.publish import publish_marts
from tests.warehouse.scenario import land_marketplace_story

DBT_PROJECT = Path(__file__).resolve().parents[2] / "dbt"


@contextmanager
def _warehouse_env(warehouse: Path) -> Iterator[None]:
    previous = os.environ.get("WAREHOUSE_DIR")
    os.environ["WAREHOUSE_DIR"] = str(warehouse)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("WAREHOUSE_DIR", None)
        else:
            os.environ["WAREHOUSE_DIR"] = previous


def _release_build_file() -> None:
    """dbt-duckdb keeps its DuckDB instance open in the process after a run; close it so the
    build file can be opened read-only, as analysts and the publish step open it."""
    env = DuckDBConnectionManager._ENV
    if env is not None:
        env.close()
        DuckDBConnectionManager._ENV = None


def run_dbt(warehouse: Path, *args: str) -> dbtRunnerResult:
    (warehouse / "build").mkdir(parents=True, exist_ok=True)
    with _warehouse_env(warehouse):
        result = dbtRunner().invoke(
            [
                *args,
                "--project-dir",
                str(DBT_PROJECT),
                "--profiles-dir",
                str(DBT_PROJECT),
                "--target-path",
                str(warehouse / "dbt-target"),
                "--log-path",
                str(warehouse / "dbt-logs"),
                "--quiet",
            ]
        )
    _release_build_file()
    return result


def assert_dbt_succeeds(warehouse: Path, *args: str) -> dbtRunnerResult:
    result = run_dbt(warehouse, *args)
    if not result.success:
        failures = [
            f"{r.node.unique_id}: {r.status} {r.message}"
            for r in (result.result or [])
            if getattr(r, "status", None) not in ("success", "pass", "warn")
        ]
        raise AssertionError(f"dbt {' '.join(args)} failed: {result.exception or failures}")
    return result


def build_file(warehouse: Path) -> Path:
    return warehouse / "build" / "warehouse.duckdb"


@contextmanager
def read_warehouse(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(build_file(warehouse)), read_only=True)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture(scope="session")
def story_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The marketplace story landed and built once, tests included, for every mart test."""
    warehouse = tmp_path_factory.mktemp("warehouse")
    land_marketplace_story(warehouse)
    assert_dbt_succeeds(warehouse, "build")
    return warehouse


@pytest.fixture
def marts(story_warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with read_warehouse(story_warehouse) as connection:
        yield connection


@pytest.fixture(scope="session")
def published_file(story_warehouse: Path) -> Path:
    """The story's marts as analysts get them: published by the pipeline's publish step."""
    layout = WarehouseLayout(story_warehouse)
    publish_marts(layout, keep=2)
    return layout.current_link / "warehouse.duckdb"
