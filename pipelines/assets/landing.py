"""The landing Parquet the worker writes, kept in few files by compaction."""

from collections.abc import Iterator

import dagster as dg

from app.core.warehouse_layout import LANDING_STREAMS
from pipelines.compaction import compact_landing
from pipelines.jobs import LANDING_OP, WAREHOUSE_POOL, WarehouseBuildConfig
from pipelines.resources import WarehouseResource

_DESCRIPTIONS = {
    "events": "Domain events relayed from the outbox (docs/data-platform.md, landing/events).",
    "usage": "Widget usage beacons from the Redis Stream or the outbox (landing/usage).",
}


@dg.multi_asset(
    name=LANDING_OP,
    specs=[
        dg.AssetSpec(
            ["landing", stream],
            description=_DESCRIPTIONS[stream],
            group_name="warehouse",
            kinds={"parquet"},
        )
        for stream in LANDING_STREAMS
    ],
    pool=WAREHOUSE_POOL,
)
def landing(
    context: dg.AssetExecutionContext, config: WarehouseBuildConfig, warehouse: WarehouseResource
) -> Iterator[dg.MaterializeResult]:  # type: ignore[type-arg]
    layout = warehouse.layout
    report = compact_landing(layout, settle_seconds=warehouse.settle_seconds, full=config.full_refresh)
    for stream in LANDING_STREAMS:
        merged = [p for p in report.partitions if p.stream == stream]
        files = list(layout.landing_stream(stream).glob("dt=*/*.parquet"))
        context.log.info(
            f"{stream}: merged {sum(p.merged_files for p in merged)} files "
            f"({sum(p.rows for p in merged)} rows) in {len(merged)} partitions; {len(files)} files now"
        )
        yield dg.MaterializeResult(
            asset_key=dg.AssetKey(["landing", stream]),
            metadata={
                "files": len(files),
                "bytes": sum(f.stat().st_size for f in files if f.exists()),
                "merged_files": sum(p.merged_files for p in merged),
                "merged_rows": sum(p.rows for p in merged),
            },
        )
