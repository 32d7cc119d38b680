"""The refresh sensor: a warehouse run only when the worker has landed new files, one at a time."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from pipelines.compaction import compact_landing
from pipelines.jobs import WAREHOUSE_RUN_TAG, run_tags
from pipelines.sensors import new_landing_files_sensor
from tests.pipelines.landing_events import Marketplace, write_part


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


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
    @dg.op
    def noop() -> None:
        pass

    @dg.job
    def stand_in() -> None:
        noop()

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
