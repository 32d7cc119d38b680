"""Near-real-time refresh: a warehouse run whenever the worker has landed new files.

The cursor remembers when the previous tick listed the landing folders. A file counts as new
when its ``ctime`` (which a rename updates, so it is when the worker's file appeared under its
final name) is at or after that moment, minus a small overlap for clock granularity; files of
the overlap already seen are remembered by name, so none is missed and none counted twice.

A run that fails after compaction has renamed the files it took to ``compacted-*`` leaves rows
the marts lack in files the sensor no longer counts as new: when the latest warehouse run failed,
the sensor requests one more run (tagged with the run it retries), once per failed run and at most
``MAX_RETRIES`` times in a row, so a failure that repeats (a failing dbt test) does not loop every
tick; the next landed file or the daily build tries again after that.
"""

import json
import time
from dataclasses import dataclass

import dagster as dg

from app.core.config import get_settings
from pipelines.compaction import landing_part_files
from pipelines.jobs import WAREHOUSE_RUN_TAG, run_tags, warehouse_refresh_job
from pipelines.resources import WarehouseResource

_OVERLAP_NS = 2_000_000_000
MAX_RETRIES = 3
RETRY_OF_TAG = "bazaar/retry-of"
RETRY_ATTEMPT_TAG = "bazaar/retry-attempt"
_UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dataclass(frozen=True)
class LandingCursor:
    since_ns: int
    seen: frozenset[str]
    retried: str | None = None  # the failed warehouse run a retry was already requested for

    @classmethod
    def parse(cls, raw: str | None) -> "LandingCursor | None":
        if not raw:
            return None
        value = json.loads(raw)
        return cls(int(value["since_ns"]), frozenset(value["seen"]), value.get("retried"))

    def dump(self) -> str:
        return json.dumps({"since_ns": self.since_ns, "seen": sorted(self.seen), "retried": self.retried})


def warehouse_run_unfinished(instance: dg.DagsterInstance) -> bool:
    runs = instance.get_run_records(
        filters=dg.RunsFilter(tags={WAREHOUSE_RUN_TAG: "true"}, statuses=_UNFINISHED), limit=1
    )
    return bool(runs)


def retry_tags(instance: dg.DagsterInstance, cursor: "LandingCursor | None") -> dict[str, str] | None:
    """Tags of a run retrying the latest warehouse run if it failed and is still to be retried."""
    records = instance.get_run_records(filters=dg.RunsFilter(tags={WAREHOUSE_RUN_TAG: "true"}), limit=1)
    if not records or records[0].dagster_run.status != dg.DagsterRunStatus.FAILURE:
        return None
    failed = records[0].dagster_run
    attempt = int(failed.tags.get(RETRY_ATTEMPT_TAG, "0")) + 1
    if (cursor is not None and cursor.retried == failed.run_id) or attempt > MAX_RETRIES:
        return None
    return {RETRY_OF_TAG: failed.run_id, RETRY_ATTEMPT_TAG: str(attempt)}


@dg.sensor(
    job=warehouse_refresh_job,
    minimum_interval_seconds=get_settings().warehouse_refresh_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a warehouse refresh when the worker has landed files since the last one "
    "or the latest warehouse run failed (every WAREHOUSE_REFRESH_SECONDS), never while a warehouse "
    "run is queued or running.",
)
def new_landing_files_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult:
    if warehouse_run_unfinished(context.instance):
        # The cursor stays: the files seen now are still new for the tick after that run.
        return dg.SensorResult(
            skip_reason=dg.SkipReason("a warehouse run is queued or in progress"), cursor=context.cursor
        )
    cursor = LandingCursor.parse(context.cursor)
    listed_at_ns = time.time_ns()
    layout = warehouse.layout
    files: dict[str, int] = {}
    for path in landing_part_files(layout):
        try:
            files[str(path.relative_to(layout.landing))] = path.stat().st_ctime_ns
        except FileNotFoundError:
            continue  # compacted away since it was listed
    if cursor is None:
        # First tick of this instance: build whatever has landed, compacted or not.
        new = any(layout.landing.glob("*/dt=*/*.parquet"))
    else:
        new = any(ctime >= cursor.since_ns and name not in cursor.seen for name, ctime in files.items())
    retry = retry_tags(context.instance, cursor)
    since_ns = listed_at_ns - _OVERLAP_NS
    next_cursor = LandingCursor(
        since_ns,
        frozenset(n for n, c in files.items() if c >= since_ns),
        retry[RETRY_OF_TAG] if retry else (cursor.retried if cursor else None),
    ).dump()
    if not new and not retry:
        return dg.SensorResult(skip_reason=dg.SkipReason("no new landing files"), cursor=next_cursor)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(tags={**run_tags("refresh"), **(retry or {})})],
        cursor=next_cursor,
    )
