"""The two warehouse jobs, and what keeps warehouse runs from overlapping.

Every warehouse run carries the tag ``bazaar/warehouse=true``: ``dagster.yaml`` limits runs with
that tag to one at a time (later ones wait in the queue) and the refresh sensor skips while one
is queued or running. Runs started by hand from the asset graph carry no job tag, so the assets
also share the ``warehouse`` pool, limited to one run at a time in ``dagster.yaml`` as well.
"""

import dagster as dg
from pydantic import Field

from pipelines.dbt_project import refresh_check_keys

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


# The three steps run one after the other in the run's own process: the default executor would
# start a process per step, each importing Dagster, dbt and this code location again (seconds of
# CPU each) for steps that never run in parallel anyway.
warehouse_refresh_job = dg.define_asset_job(
    "warehouse_refresh",
    # Every asset, and of dbt's tests only those tagged `refresh` (dbt/selectors.yml).
    selection=dg.AssetSelection.all().without_checks() | dg.AssetSelection.checks(*refresh_check_keys()),
    description="Compact new landing files, build dbt incrementally (the key and money tests as "
    "checks), publish.",
    tags=run_tags("refresh"),
    executor_def=dg.in_process_executor,
)

warehouse_full_build_job = dg.define_asset_job(
    "warehouse_full_build",
    selection=dg.AssetSelection.all(),
    description="Daily: compact every closed day, rebuild all dbt models from scratch with every "
    "test, publish.",
    tags=run_tags("full"),
    executor_def=dg.in_process_executor,
    config=dg.RunConfig(
        ops={
            LANDING_OP: WarehouseBuildConfig(full_refresh=True),
            DBT_OP: WarehouseBuildConfig(full_refresh=True),
        }
    ),
)
