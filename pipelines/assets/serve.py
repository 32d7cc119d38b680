"""The published marts the API and analysts read: ``serve/current``."""

import dagster as dg
import duckdb

from pipelines.assets.dbt import mart_keys
from pipelines.jobs import WAREHOUSE_POOL
from pipelines.publish import MARTS_SCHEMA, publish_marts
from pipelines.resources import WarehouseResource


@dg.asset(
    deps=mart_keys(),
    group_name="warehouse",
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    description="A read-only copy of every mart under serve/<version>/, pointed at by serve/current.",
)
def served_marts(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:  # type: ignore[type-arg]
    layout = warehouse.layout
    version = publish_marts(layout, run_id=context.run.run_id, keep=warehouse.keep_versions)
    served = layout.served_file(version)
    with duckdb.connect(str(served), read_only=True) as con:
        estimated_rows = dict(
            con.execute(
                "SELECT table_name, estimated_size FROM duckdb_tables() WHERE schema_name = ? "
                "ORDER BY table_name",
                [MARTS_SCHEMA],
            ).fetchall()
        )
        as_of = con.execute(f"SELECT as_of FROM {MARTS_SCHEMA}.serve_meta").fetchone()
    context.log.info(f"published {version} ({len(estimated_rows)} tables); serve/current -> {version}")
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "path": dg.MetadataValue.path(str(served)),
            "as_of": str(as_of[0]) if as_of and as_of[0] is not None else None,
            "estimated_rows": dg.MetadataValue.json(estimated_rows),
        }
    )
