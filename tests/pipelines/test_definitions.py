"""The code location `bazaar dev` and compose start: it loads, and its instance config limits runs."""

import shutil
from pathlib import Path

import dagster as dg

import pipelines
from pipelines.definitions import defs
from pipelines.jobs import WAREHOUSE_RUN_TAG
from pipelines.resources import WarehouseResource
from pipelines.sensors import TICK_SECONDS


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
        job = defs.resolve_job_def(name)
        assert job.tags[WAREHOUSE_RUN_TAG] == "true"
        # Steps run in the run's own process, not one process (and code import) per step.
        assert job.executor_def.name == dg.in_process_executor.name
    sensor = defs.resolve_sensor_def("new_landing_files_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == TICK_SECONDS == 5
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
        # A queued refresh starts within a second, not Dagster's default 5.
        assert instance.run_coordinator.dequeue_interval_seconds == 1
        instance.get_runs()  # storage is created under DAGSTER_HOME
    assert (tmp_path / "history" / "runs.db").exists()


def test_a_dbt_invocation_does_not_first_load_dbt_twice_more_in_the_run(monkeypatch):
    # dagster-dbt asks `dbt --version` in a new process and loads dbt's profile, project and
    # adapter in the run's own process before every invocation: seconds of CPU on every refresh,
    # for a version the installed package knows and metadata these assets never fetch.
    import inspect
    from importlib.metadata import version

    import dagster_dbt.core.resource as dagster_dbt_resource
    import dbt.config.runtime
    from dagster_dbt import DbtCliResource
    from packaging.version import Version

    from pipelines.dbt_project import dbt_cli_resource

    def fails(*args, **kwargs):
        raise AssertionError(f"called with {args}")

    monkeypatch.setattr(dagster_dbt_resource, "check_output", fails)
    monkeypatch.setattr(dbt.config.runtime, "load_profile", fails)
    resource = dbt_cli_resource()
    assert resource._cli_version == Version(version("dbt-core"))
    assert resource._initialize_dbt_core_adapter(["build"]) is None
    # The hooks overridden are the ones dagster-dbt's `cli` calls (caught on an upgrade).
    source = inspect.getsource(DbtCliResource.cli)
    assert "self._cli_version" in source
    assert "self._initialize_dbt_core_adapter(" in source


def test_the_refresh_job_runs_every_model_with_only_the_tests_tagged_refresh():
    from pipelines.assets import warehouse_models
    from pipelines.dbt_project import refresh_check_keys

    job = defs.resolve_job_def("warehouse_refresh")
    checks = {key.name for key in job.asset_layer.asset_graph.asset_check_keys}
    assert {
        "revenue_daily_matches_splits",
        "ledger_transactions_balance",
        "unique_fct_revenue_splits_purchase_id",
    } <= checks
    assert not any(name.startswith(("not_null", "accepted_values", "relationships")) for name in checks)
    assert checks == {key.name for key in refresh_check_keys()}
    # dagster-dbt names each selected model and test on dbt's command line; past 200 it runs a
    # copy of the whole dbt project from a temporary folder instead (no partial parsing, a folder
    # left behind per run).
    assert len(warehouse_models.keys) + len(checks) < 200
