"""The daily full build: every closed day compacted to one file, every model rebuilt."""

import dagster as dg

from pipelines.jobs import warehouse_full_build_job

# 02:30 UTC: after midnight, so yesterday's partitions are closed and fold into one file each.
daily_full_build_schedule = dg.ScheduleDefinition(
    name="daily_full_build",
    job=warehouse_full_build_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Compacts closed days and rebuilds the warehouse from all landing files once a day.",
)
