"""The two warehouse jobs, and what keeps warehouse runs from overlapping.

Every warehouse run carries the tag ``bazaar/warehouse=true``: ``dagster.yaml`` limits runs with
that tag to one at a time (later ones wait in the queue) and the refresh sensor skips while one
is queued or running. Runs started by hand from the asset graph carry no job tag, so the assets
also share the ``warehouse`` pool, limited to one run at a time in ``dagster.yaml`` as well.
"""

import dagster as dg
from pydantic import Field

WAREHOUSE_RUN_TAG = "bazaar/warehouse"
WAREHOUSE_BUILD_TAG = "bazaar/warehouse-build"
WAREHOUSE_POOL = "warehouse"

LANDING_OP = "landing"
DBT_OP = "warehouse_models"


class WarehouseBuildConfig(dg.Config):
    full_refresh: bool = Field(
        False,
        description="Rebuild every dbt model from all landing files (`dbt build --full-refresh`) and "
        "fold closed days' landing files into one file each.",
    )


def run_tags(kind: str) -> dict[str, str]:
    return {WAREHOUSE_RUN_TAG: "true", WAREHOUSE_BUILD_TAG: kind}


warehouse_refresh_job = dg.define_asset_job(
    "warehouse_refresh",
    selection=dg.AssetSelection.all(),
    description="Compact new landing files, build dbt incrementally (tests as checks), publish.",
    tags=run_tags("refresh"),
)

warehouse_full_build_job = dg.define_asset_job(
    "warehouse_full_build",
    selection=dg.AssetSelection.all(),
    description="Daily: compact every closed day, rebuild all dbt models from scratch, publish.",
    tags=run_tags("full"),
    config=dg.RunConfig(
        ops={
            LANDING_OP: WarehouseBuildConfig(full_refresh=True),
            DBT_OP: WarehouseBuildConfig(full_refresh=True),
        }
    ),
)
