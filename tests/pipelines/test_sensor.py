"""The refresh sensor: a warehouse run only when the worker has landed new files, one at a time,
at most once per WAREHOUSE_REFRESH_SECONDS."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from app.core.config import get_settings
from pipelines import sensors
from pipelines.compaction import compact_landing
from pipelines.jobs import WAREHOUSE_RUN_TAG, run_tags
from pipelines.sensors import (
    MAX_RETRIES,
    RETRY_OF_TAG,
    STREAMS_TAG,
    latest_warehouse_run,
    new_landing_files_sensor,
    seconds_until_due,
)
from tests.pipelines.landing_events import Marketplace, write_part


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def default_refresh_interval():
    """For the tests about the interval itself: WAREHOUSE_REFRESH_SECONDS as configured."""


@pytest.fixture(autouse=True)
def refresh_always_due(request, monkeypatch):
    """Runs in these tests are created a moment apart: unless a test asks for
    ``default_refresh_interval``, a refresh is due as soon as none is queued or running."""
    if "default_refresh_interval" in request.fixturenames:
        return
    settings = get_settings().model_copy(update={"warehouse_refresh_seconds": 0})
    monkeypatch.setattr(sensors, "get_settings", lambda: settings)


@dg.op
def noop() -> None:
    pass


@dg.job
def stand_in() -> None:
    noop()


def tick(instance, warehouse, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"warehouse": warehouse})
    result = new_landing_files_sensor(context)
    return result, result.cursor


def test_a_run_is_requested_only_when_new_landing_files_exist(instance, layout, warehouse):
    market = Marketplace()
    now = datetime.now(UTC)

    result, cursor = tick(instance, warehouse, None)
    assert not result.run_requests  # an empty warehouse: nothing to build

    write_part(layout, "events", market.sign_ups_and_sale(), landed_at=now)
    result, cursor = tick(instance, warehouse, cursor)
    [request] = result.run_requests
    assert request.tags[WAREHOUSE_RUN_TAG] == "true"

    result, cursor = tick(instance, warehouse, cursor)
    assert not result.run_requests  # the same file does not trigger a second build

    write_part(layout, "usage", market.messages(2), landed_at=now)
    result, cursor = tick(instance, warehouse, cursor)
    assert len(result.run_requests) == 1

    result, cursor = tick(instance, warehouse, cursor)
    assert not result.run_requests


def test_compaction_of_already_seen_files_does_not_trigger_a_build(instance, layout, warehouse):
    market = Marketplace()
    now = datetime.now(UTC)
    for _ in range(3):
        write_part(layout, "usage", market.messages(1), landed_at=now, age_s=300)
    result, cursor = tick(instance, warehouse, None)
    assert len(result.run_requests) == 1

    compact_landing(layout, settle_seconds=60)
    result, cursor = tick(instance, warehouse, cursor)
    assert not result.run_requests


def test_first_tick_builds_what_landed_before_dagster_started(instance, layout, warehouse):
    market = Marketplace()
    for _ in range(2):
        write_part(layout, "usage", market.messages(1), landed_at=datetime.now(UTC), age_s=3600)
    compact_landing(layout, settle_seconds=60)  # only a compacted file is left

    result, _ = tick(instance, warehouse, None)
    assert len(result.run_requests) == 1


def test_no_run_is_requested_while_a_warehouse_run_is_queued_and_the_files_wait_for_the_next_tick(
    instance, layout, warehouse
):
    market = Marketplace()
    _, cursor = tick(instance, warehouse, None)
    running = instance.create_run_for_job(job_def=stand_in, tags=run_tags("refresh"))
    write_part(layout, "usage", market.messages(1), landed_at=datetime.now(UTC))

    result, cursor_while_busy = tick(instance, warehouse, cursor)
    assert not result.run_requests
    assert result.skip_reason
    assert cursor_while_busy == cursor

    instance.report_run_canceled(running)
    result, _ = tick(instance, warehouse, cursor)
    assert len(result.run_requests) == 1


def run_that_fails(instance, request, layout):
    """A warehouse run as the daemon would start it from ``request``: compaction, then a failure."""
    run = instance.create_run_for_job(job_def=stand_in, tags=request.tags)
    compact_landing(layout, settle_seconds=60)
    instance.report_run_failed(run)
    return run


def requests(instance, warehouse, cursor):
    result, cursor = tick(instance, warehouse, cursor)
    return result.run_requests or [], cursor


@pytest.fixture
def ephemeral():
    instance = dg.DagsterInstance.ephemeral()
    yield instance
    instance.dispose()


def start(instance, request, status=None):
    """The run the daemon would create from ``request`` (queued, or already ended with ``status``)."""
    return instance.create_run_for_job(job_def=stand_in, tags=request.tags, status=status)


def test_a_run_that_failed_after_compacting_the_new_files_is_retried_once(ephemeral, layout, warehouse):
    market = Marketplace()
    _, cursor = tick(ephemeral, warehouse, None)
    for _ in range(2):
        write_part(layout, "usage", market.messages(1), landed_at=datetime.now(UTC), age_s=300)
    [request], cursor = requests(ephemeral, warehouse, cursor)

    failed = start(ephemeral, request)
    compact_landing(layout, settle_seconds=60)  # the run's first step: the part files are gone
    ephemeral.report_run_failed(failed)
    assert not list(layout.landing.rglob("part-*.parquet"))

    [retry], cursor = requests(ephemeral, warehouse, cursor)
    assert retry.tags[WAREHOUSE_RUN_TAG] == "true"
    assert retry.tags[RETRY_OF_TAG] == failed.run_id

    result, cursor = tick(ephemeral, warehouse, cursor)
    assert not result.run_requests  # one retry per failed run, even before the daemon starts it

    retrying = start(ephemeral, retry)
    result, cursor = tick(ephemeral, warehouse, cursor)
    assert not result.run_requests  # never next to a queued or running warehouse run
    ephemeral.report_run_failed(retrying)
    [second], cursor = requests(ephemeral, warehouse, cursor)
    assert second.tags[RETRY_OF_TAG] == retrying.run_id

    start(ephemeral, second, status=dg.DagsterRunStatus.SUCCESS)
    result, cursor = tick(ephemeral, warehouse, cursor)
    assert not result.run_requests  # built: nothing left to retry


def test_a_failure_that_repeats_is_retried_a_bounded_number_of_times(ephemeral, layout, warehouse):
    market = Marketplace()
    _, cursor = tick(ephemeral, warehouse, None)
    write_part(layout, "usage", market.messages(1), landed_at=datetime.now(UTC))
    [request], cursor = requests(ephemeral, warehouse, cursor)
    start(ephemeral, request, status=dg.DagsterRunStatus.FAILURE)

    for _ in range(MAX_RETRIES):
        [request], cursor = requests(ephemeral, warehouse, cursor)
        start(ephemeral, request, status=dg.DagsterRunStatus.FAILURE)
    result, cursor = tick(ephemeral, warehouse, cursor)
    assert not result.run_requests
    assert result.skip_reason

    write_part(layout, "usage", market.messages(1), landed_at=datetime.now(UTC))
    [request], _ = requests(ephemeral, warehouse, cursor)  # newly landed rows: a run again
    assert RETRY_OF_TAG not in request.tags


def test_refreshes_start_at_most_once_per_interval_and_new_files_wait_for_the_tick_when_one_is_due(
    instance, layout, warehouse, default_refresh_interval
):
    market = Marketplace()
    write_part(layout, "usage", market.messages(1), landed_at=datetime.now(UTC))
    [request], cursor = requests(instance, warehouse, None)
    start(instance, request, status=dg.DagsterRunStatus.SUCCESS)  # a quick refresh, already done

    write_part(layout, "usage", market.messages(1), landed_at=datetime.now(UTC))
    result, cursor_while_waiting = tick(instance, warehouse, cursor)
    assert not result.run_requests
    assert "due in" in result.skip_reason.skip_message
    assert cursor_while_waiting == cursor  # the new file still counts at the tick that is due

    latest = latest_warehouse_run(instance)
    created = latest.create_timestamp.timestamp()
    interval = get_settings().warehouse_refresh_seconds
    assert interval == 30
    assert seconds_until_due(latest, interval, now=created + 10) == pytest.approx(20)
    assert seconds_until_due(latest, interval, now=created + interval) == 0
    assert seconds_until_due(None, interval, now=created) == 0  # never built: build now


def test_a_refresh_builds_what_the_new_files_can_change(instance, layout, warehouse):
    market = Marketplace()
    write_part(layout, "events", market.sign_ups_and_sale(), landed_at=datetime.now(UTC))
    [first], cursor = requests(instance, warehouse, None)
    assert first.asset_selection is None  # the first run of an instance builds everything
    start(instance, first, status=dg.DagsterRunStatus.SUCCESS)

    # Only beacons landed: the usage models and what reads them, with their key and money checks.
    write_part(layout, "usage", market.messages(2), landed_at=datetime.now(UTC))
    [usage_only], cursor = requests(instance, warehouse, cursor)
    assert usage_only.tags[STREAMS_TAG] == "usage"
    selected = {key.to_user_string() for key in usage_only.asset_selection}
    assert {"staging/stg_usage_beacons", "marts/usage_by_period", "served_marts"} <= selected
    assert not selected & {"staging/stg_events", "marts/revenue_daily", "marts/fct_revenue_splits"}
    checks = {key.name for key in usage_only.asset_check_keys}
    assert "unique_combination_usage_by_period_grain__period_start__widget_id" in checks
    assert not any(name.startswith("not_null") for name in checks)
    start(instance, usage_only, status=dg.DagsterRunStatus.SUCCESS)

    # Both streams: the whole refresh job.
    write_part(layout, "usage", market.messages(1), landed_at=datetime.now(UTC))
    write_part(layout, "events", market.sign_ups_and_sale(), landed_at=datetime.now(UTC))
    [both], _ = requests(instance, warehouse, cursor)
    assert both.asset_selection is None
    assert STREAMS_TAG not in both.tags
