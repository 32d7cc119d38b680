"""Publish the marts dbt built: a new read-only copy under ``serve/<version>/``, then flip ``current``.

The API and analysts only ever open a published file, never ``build/warehouse.duckdb`` (DuckDB
locks it while dbt writes). A published version is written once and never touched again: the
copy is made in a hidden folder, renamed into place, and only then does ``serve/current`` (a
relative symlink) move to it with an atomic ``os.replace``. A reader that resolved ``current``
a moment earlier keeps reading the old file, which stays until it falls beyond ``keep``.
"""

import os
import re
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from app.core.warehouse_layout import SERVE_FILE, WarehouseLayout
from pipelines.durable import fsync_path

MARTS_SCHEMA = "marts"
META_TABLE = "serve_meta"
VERSION_PATTERN = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


class NothingToPublishError(RuntimeError):
    """The build file is missing or has no ``marts`` tables: dbt has not built anything yet."""


def new_version(now: datetime | None = None) -> str:
    """``YYYYMMDDTHHMMSSZ-<8 hex>``: sorts by time, unique even within one second."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


def published_versions(layout: WarehouseLayout) -> list[str]:
    """Complete versions under ``serve/``, oldest first."""
    if not layout.serve.is_dir():
        return []
    versions = [
        entry.name
        for entry in layout.serve.iterdir()
        if VERSION_PATTERN.match(entry.name) and not entry.is_symlink() and (entry / SERVE_FILE).is_file()
    ]
    # Two publishes within one second differ only by their random suffix: the file's age breaks the tie.
    return sorted(versions, key=lambda v: (v[:16], layout.served_file(v).stat().st_mtime_ns))


def publish_marts(layout: WarehouseLayout, *, run_id: str | None = None, keep: int) -> str:
    """Copy every ``marts`` table of the build file into a new served version, point
    ``serve/current`` at it and delete versions beyond the newest ``keep``. Returns the version."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    if not layout.build_file.is_file():
        raise NothingToPublishError(f"{layout.build_file} does not exist: run dbt build first")
    layout.serve.mkdir(parents=True, exist_ok=True)
    published_at = datetime.now(UTC)
    version = new_version(published_at)
    staging = layout.serve / f".{version}.tmp"
    staging.mkdir()
    try:
        _copy_marts(layout.build_file, staging / SERVE_FILE, version, published_at, run_id)
        fsync_path(staging / SERVE_FILE)
        fsync_path(staging)
        staging.rename(layout.version_dir(version))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_path(layout.serve)
    _point_current_at(layout, version)
    prune_versions(layout, keep=keep)
    return version


def _copy_marts(
    build_file: Path, target: Path, version: str, published_at: datetime, run_id: str | None
) -> None:
    with duckdb.connect(str(target)) as con:
        # read_only: the build file is dbt's; attaching it read-only never takes its write lock.
        con.execute("ATTACH ? AS build (READ_ONLY)", [str(build_file)])
        tables = [
            name
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() "
                "WHERE database_name = 'build' AND schema_name = ? ORDER BY table_name",
                [MARTS_SCHEMA],
            ).fetchall()
        ]
        # dbt may materialize a mart as a view; copy those too, as tables (the copy stands alone).
        views = [
            name
            for (name,) in con.execute(
                "SELECT view_name FROM duckdb_views() "
                "WHERE database_name = 'build' AND schema_name = ? AND NOT internal ORDER BY view_name",
                [MARTS_SCHEMA],
            ).fetchall()
        ]
        marts = sorted(name for name in {*tables, *views} if name != META_TABLE)
        if not marts:
            raise NothingToPublishError(f"{build_file} has no tables in schema {MARTS_SCHEMA!r}")
        as_of = _newest_landed_at(con)
        con.execute(f"CREATE SCHEMA {MARTS_SCHEMA}")
        for name in marts:
            con.execute(
                f"CREATE TABLE {MARTS_SCHEMA}.{_quote(name)} AS "
                f"SELECT * FROM build.{MARTS_SCHEMA}.{_quote(name)}"
            )
        con.execute(
            f"CREATE TABLE {MARTS_SCHEMA}.{META_TABLE} ("
            "version VARCHAR NOT NULL, published_at TIMESTAMPTZ NOT NULL, "
            "as_of TIMESTAMPTZ, run_id VARCHAR)"
        )
        con.execute(
            f"INSERT INTO {MARTS_SCHEMA}.{META_TABLE} VALUES (?, ?, ?, ?)",
            [version, published_at, as_of, run_id],
        )
        con.execute("DETACH build")
        con.execute("CHECKPOINT")


def _newest_landed_at(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The newest ``landed_at`` among the rows dbt materialized (staging keeps it), so ``as_of``
    says how fresh the published numbers are, not when the newest file arrived."""
    columns = con.execute(
        "SELECT c.schema_name, c.table_name FROM duckdb_columns() c "
        "JOIN duckdb_tables() t ON t.database_name = c.database_name "
        "AND t.schema_name = c.schema_name AND t.table_name = c.table_name "
        "WHERE c.database_name = 'build' AND c.column_name = 'landed_at' "
        "AND c.data_type LIKE 'TIMESTAMP%'"
    ).fetchall()
    if not columns:
        return None
    union = " UNION ALL ".join(
        f"SELECT max(landed_at)::TIMESTAMPTZ AS landed_at FROM build.{_quote(schema)}.{_quote(table)}"
        for schema, table in columns
    )
    row = con.execute(f"SELECT max(landed_at) FROM ({union})").fetchone()
    value = row[0] if row else None
    return value if isinstance(value, datetime) else None


def _point_current_at(layout: WarehouseLayout, version: str) -> None:
    link = layout.current_link
    temporary = layout.serve / f".current-{secrets.token_hex(4)}"
    os.symlink(version, temporary)  # relative: the tree stays valid when WAREHOUSE_DIR moves
    try:
        os.replace(temporary, link)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_path(layout.serve)


def prune_versions(layout: WarehouseLayout, *, keep: int) -> list[str]:
    """Delete all but the newest ``keep`` versions, never the one ``current`` points at, and
    leftovers of publishes that died half-way. Returns the deleted versions."""
    current = layout.current_version()
    versions = published_versions(layout)
    doomed = [v for v in versions[: max(len(versions) - keep, 0)] if v != current]
    for version in doomed:
        # A reader may still hold the file open: on POSIX its data stays until it closes it.
        shutil.rmtree(layout.version_dir(version), ignore_errors=True)
    for leftover in layout.serve.glob(".*.tmp"):
        if leftover.is_dir() and _older_than(leftover, seconds=3600):
            shutil.rmtree(leftover, ignore_errors=True)
    return doomed


def _older_than(path: Path, *, seconds: float) -> bool:
    try:
        return datetime.now(UTC).timestamp() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'
