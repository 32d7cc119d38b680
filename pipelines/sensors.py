"""Near-real-time refresh: a warehouse run whenever the worker has landed new files.

The sensor looks every ``TICK_SECONDS`` (5), which costs a listing of the landing folders, and
requests a refresh as soon as there are new files, no warehouse run is queued or running, and
the latest warehouse run was created at least ``WAREHOUSE_REFRESH_SECONDS`` (30) ago. So a run
that ends with newer files waiting is followed by the next one within a tick rather than a
whole interval later, and refreshes still start at most once per interval (a small warehouse on
a busy stream does not rebuild back to back).

A refresh builds what the new files can change: when only one landing stream has new files (a
widget's beacons, say, and no domain event), the run selects that stream's models and what
depends on them, with their ``refresh`` checks, and publishes; the other stream's models hold
nothing new and are left as they are. The first run of an instance and retries build it all.

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
from functools import cache

import dagster as dg

from app.core.config import get_settings
from app.core.warehouse_layout import LANDING_STREAMS
from pipelines.assets import landing, served_marts, warehouse_models
from pipelines.compaction import landing_part_files
from pipelines.dbt_project import refresh_check_keys
from pipelines.jobs import WAREHOUSE_RUN_TAG, run_tags, warehouse_refresh_job
from pipelines.resources import WarehouseResource

_OVERLAP_NS = 2_000_000_000
TICK_SECONDS = 5
MAX_RETRIES = 3
RETRY_OF_TAG = "bazaar/retry-of"
RETRY_ATTEMPT_TAG = "bazaar/retry-attempt"
STREAMS_TAG = "bazaar/landing-streams"  # on a refresh of only some streams' models
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


def latest_warehouse_run(instance: dg.DagsterInstance) -> dg.RunRecord | None:
    records = instance.get_run_records(filters=dg.RunsFilter(tags={WAREHOUSE_RUN_TAG: "true"}), limit=1)
    return records[0] if records else None


def retry_tags(latest: dg.RunRecord | None, cursor: "LandingCursor | None") -> dict[str, str] | None:
    """Tags of a run retrying the latest warehouse run if it failed and is still to be retried."""
    if latest is None or latest.dagster_run.status != dg.DagsterRunStatus.FAILURE:
        return None
    failed = latest.dagster_run
    attempt = int(failed.tags.get(RETRY_ATTEMPT_TAG, "0")) + 1
    if (cursor is not None and cursor.retried == failed.run_id) or attempt > MAX_RETRIES:
        return None
    return {RETRY_OF_TAG: failed.run_id, RETRY_ATTEMPT_TAG: str(attempt)}


@cache
def refresh_selection(streams: frozenset[str]) -> tuple[list[dg.AssetKey], list[dg.AssetCheckKey]]:
    """The assets a refresh of new files in ``streams`` builds (everything downstream of those
    landing streams, and the landing step itself, which compacts both) and their ``refresh``
    checks."""
    landing_keys = [dg.AssetKey(["landing", stream]) for stream in LANDING_STREAMS]
    changed = [dg.AssetKey(["landing", stream]) for stream in sorted(streams)]
    selected = (
        dg.AssetSelection.assets(*changed).downstream() | dg.AssetSelection.assets(*landing_keys)
    ).resolve([landing, warehouse_models, served_marts])
    checks = [key for key in refresh_check_keys() if key.asset_key in selected]
    return sorted(selected, key=lambda key: key.to_user_string()), checks


def refresh_request(streams: frozenset[str], tags: dict[str, str]) -> dg.RunRequest:
    """The refresh of the models new files in ``streams`` can change (all of them: the job)."""
    if streams >= set(LANDING_STREAMS):
        return dg.RunRequest(tags=tags)
    assets, checks = refresh_selection(streams)
    return dg.RunRequest(
        tags={**tags, STREAMS_TAG: ",".join(sorted(streams))},
        asset_selection=assets,
        asset_check_keys=checks,
    )


def seconds_until_due(latest: dg.RunRecord | None, refresh_seconds: float, now: float) -> float:
    """How long until a refresh may start: ``refresh_seconds`` after the latest warehouse run was
    created (0 when it is due)."""
    if latest is None:
        return 0.0
    return max(0.0, latest.create_timestamp.timestamp() + refresh_seconds - now)


@dg.sensor(
    job=warehouse_refresh_job,
    minimum_interval_seconds=TICK_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a warehouse refresh when the worker has landed files since the last one "
    "or the latest warehouse run failed: looks every 5 s, never while a warehouse run is queued or "
    "running, and at most once every WAREHOUSE_REFRESH_SECONDS.",
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
        streams = frozenset(LANDING_STREAMS)
    else:
        # Names are <stream>/dt=<day>/part-*.parquet.
        streams = frozenset(
            name.split("/", 1)[0]
            for name, ctime in files.items()
            if ctime >= cursor.since_ns and name not in cursor.seen
        )
        new = bool(streams)
    latest = latest_warehouse_run(context.instance)
    retry = retry_tags(latest, cursor)
    since_ns = listed_at_ns - _OVERLAP_NS
    next_cursor = LandingCursor(
        since_ns,
        frozenset(n for n, c in files.items() if c >= since_ns),
        retry[RETRY_OF_TAG] if retry else (cursor.retried if cursor else None),
    ).dump()
    if not new and not retry:
        return dg.SensorResult(skip_reason=dg.SkipReason("no new landing files"), cursor=next_cursor)
    wait = seconds_until_due(latest, get_settings().warehouse_refresh_seconds, listed_at_ns / 1e9)
    if wait > 0:
        # The cursor stays: the files are still new for the tick that requests the refresh.
        return dg.SensorResult(
            skip_reason=dg.SkipReason(f"new landing files; the next refresh is due in {wait:.0f} s"),
            cursor=context.cursor,
        )
    if retry:
        # A failed run may have compacted files of either stream: rebuild everything.
        streams = frozenset(LANDING_STREAMS)
    return dg.SensorResult(
        run_requests=[refresh_request(streams, {**run_tags("refresh"), **(retry or {})})],
        cursor=next_cursor,
    )
