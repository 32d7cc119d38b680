"""The code location `bazaar dev` and compose start: it loads, and its instance config limits runs."""

import shutil
from pathlib import Path

import dagster as dg

import pipelines
from pipelines.definitions import defs
from pipelines.jobs import WAREHOUSE_RUN_TAG
from pipelines.resources import WarehouseResource


def test_the_code_location_loads_with_the_whole_warehouse_graph():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"landing/events", "landing/usage", "served_marts"} <= keys
    assert "marts/revenue_daily" in keys
    assert "staging/stg_usage_beacons" in keys
    # Landing feeds dbt's staging, and every mart feeds the published copy.
    assert (
        dg.AssetKey(["landing", "usage"])
        in graph.get(dg.AssetKey(["staging", "stg_usage_beacons"])).parent_keys
    )
    served_parents = graph.get(dg.AssetKey("served_marts")).parent_keys
    assert dg.AssetKey(["marts", "revenue_daily"]) in served_parents
    assert all(key.path[0] == "marts" for key in served_parents)
    # dbt tests are asset checks.
    assert any(check.asset_key == dg.AssetKey(["marts", "revenue_daily"]) for check in graph.asset_check_keys)


def test_jobs_sensor_and_schedule_are_warehouse_runs_that_start_on_their_own():
    for name in ("warehouse_refresh", "warehouse_full_build"):
        assert defs.resolve_job_def(name).tags[WAREHOUSE_RUN_TAG] == "true"
    sensor = defs.resolve_sensor_def("new_landing_files_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 60
    schedule = defs.resolve_schedule_def("daily_full_build")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "warehouse_full_build"


def test_the_warehouse_resource_comes_from_settings(layout):
    from pipelines.resources import warehouse_resource

    resource = warehouse_resource()
    assert isinstance(resource, WarehouseResource)
    assert resource.layout.root == layout.root.resolve()
    assert resource.keep_versions == 3


def test_the_instance_template_queues_runs_and_allows_one_warehouse_run_at_a_time(tmp_path, monkeypatch):
    shutil.copyfile(Path(pipelines.__file__).parent / "dagster.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.get_concurrency_config().run_queue_config
        assert {"key": WAREHOUSE_RUN_TAG, "limit": 1} in queue.tag_concurrency_limits
        instance.get_runs()  # storage is created under DAGSTER_HOME
    assert (tmp_path / "history" / "runs.db").exists()
