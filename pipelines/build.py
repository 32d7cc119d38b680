"""One warehouse build outside Dagster (``bazaar warehouse-build``): compaction -> dbt build -> publish.

The same functions the assets call, in this process, with progress lines for a terminal. Do not
run it while the Dagster daemon runs warehouse jobs on the same ``WAREHOUSE_DIR``: DuckDB would
refuse the second writer of the build file (nothing is lost, the later build fails).
"""

from collections.abc import Callable

from pipelines.compaction import compact_landing
from pipelines.dbt_project import dbt_build_args, dbt_cli_resource, dbt_target_path, ensure_manifest
from pipelines.publish import publish_marts
from pipelines.resources import WarehouseResource

_DBT_PROGRESS_EVENTS = {
    "LogStartLine",
    "LogModelResult",
    "LogTestResult",
    "LogSeedResult",
    "LogSnapshotResult",
    "RunResultError",
    "RunResultFailure",
    "RunResultWarning",
    "StatsLine",
}


class WarehouseBuildError(RuntimeError):
    pass


def build_warehouse(
    warehouse: WarehouseResource, *, full_refresh: bool = False, echo: Callable[[str], None] = print
) -> str:
    """Build and publish once; returns the published version. Without ``full_refresh``, the
    build a Dagster refresh run does (incremental models, the refresh selection of tests)."""
    layout = warehouse.layout
    echo(f"warehouse {layout.root}")
    report = compact_landing(layout, settle_seconds=warehouse.settle_seconds, full=full_refresh)
    echo(
        f"[1/3] compaction: merged {report.merged_files} files ({report.rows} rows) "
        f"in {len(report.partitions)} partitions"
    )
    ensure_manifest(warehouse)
    args = dbt_build_args(full_refresh=full_refresh)
    echo(f"[2/3] dbt {' '.join(args)}")
    with warehouse.dbt_environment():
        invocation = dbt_cli_resource().cli(args, raise_on_error=False, target_path=dbt_target_path(layout))
        for event in invocation.stream_raw_events():
            info = event.raw_event.get("info", {})
            if info.get("name") in _DBT_PROGRESS_EVENTS:
                echo(f"      {info.get('msg', '')}")
        if not invocation.is_successful():
            raise WarehouseBuildError(
                f"dbt {' '.join(args)} failed; nothing published (logs: {invocation.target_path})"
            )
    version = publish_marts(layout, keep=warehouse.keep_versions)
    echo(f"[3/3] published {version}; serve/current -> {version}")
    return version
