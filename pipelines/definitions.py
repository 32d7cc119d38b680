"""The Dagster code location: ``dagster-webserver -m pipelines.definitions`` (``bazaar dev``)."""

import dagster as dg

from pipelines.assets import landing, served_marts, warehouse_models
from pipelines.dbt_project import dbt_cli_resource
from pipelines.jobs import warehouse_full_build_job, warehouse_refresh_job
from pipelines.resources import warehouse_resource
from pipelines.schedules import daily_full_build_schedule
from pipelines.sensors import new_landing_files_sensor

defs = dg.Definitions(
    assets=[landing, warehouse_models, served_marts],
    jobs=[warehouse_refresh_job, warehouse_full_build_job],
    sensors=[new_landing_files_sensor],
    schedules=[daily_full_build_schedule],
    resources={
        "warehouse": warehouse_resource(),
        "dbt": dbt_cli_resource(),
    },
)
