"""The warehouse from empty to incremental: a build on no files works, later builds read only
the landing partitions since their watermark, and re-running changes nothing."""

from decimal import Decimal
from pathlib import Path

import polars as pl

from tests.warehouse.conftest import assert_dbt_succeeds, read_warehouse
from tests.warehouse.landing import Story
from tests.warehouse.scenario import land_friday_sale, land_marketplace_story, uid

COUNTED_TABLES = (
    "staging.stg_events",
    "staging.stg_usage_beacons",
    "staging.stg_chat_message",
    "marts.fct_revenue_splits",
    "marts.fct_ledger_entries",
    "marts.fct_chat_messages",
)


def counts(warehouse: Path) -> dict[str, int]:
    with read_warehouse(warehouse) as connection:
        return {
            table: connection.execute(f"select count(*) from {table}").fetchone()[0]
            for table in COUNTED_TABLES
        }


def money(warehouse: Path) -> tuple:
    with read_warehouse(warehouse) as connection:
        return connection.execute(
            "select sum(gmv_minor), sum(net_revenue_minor) from marts.platform_money_daily"
        ).fetchone()


def llm_totals(warehouse: Path) -> tuple:
    with read_warehouse(warehouse) as connection:
        return connection.execute(
            "select sum(answers), sum(input_tokens), sum(output_tokens), sum(cost_usd) "
            "from marts.llm_usage_daily"
        ).fetchone()


def corrupt(path: Path) -> None:
    """Overwrite a landed file with bytes that are not Parquet: any build reading it fails."""
    path.write_bytes(b"not a parquet file")


def test_from_empty_to_incremental_builds_that_read_only_new_partitions(tmp_path: Path) -> None:
    # Nothing landed yet: the build (models and their tests) works and the marts are empty.
    assert_dbt_succeeds(tmp_path, "build")
    with read_warehouse(tmp_path) as connection:
        assert connection.execute("select count(*) from marts.leaderboards").fetchone() == (0,)
        assert connection.execute("select count(*) from marts.platform_money_daily").fetchone() == (0,)

    land_marketplace_story(tmp_path)
    assert_dbt_succeeds(tmp_path, "run")
    before = counts(tmp_path)
    gmv_before, _ = money(tmp_path)
    answers_before, input_before, output_before, cost_before = llm_totals(tmp_path)

    # Monday's files are older than the watermark's lookback (Wednesday 23:00 − a few hours):
    # an incremental build must not open them, so breaking them must not break the build.
    for monday_file in (tmp_path / "landing").glob("*/dt=2026-11-02/*.parquet"):
        corrupt(monday_file)
    # Friday's batch: a new sale and a studio answer, with Tuesday's Sales Pal sale and LLM
    # answers relanded.
    tuesday_events = pl.concat(
        [pl.read_parquet(p) for p in (tmp_path / "landing" / "events").glob("dt=2026-11-03/*.parquet")]
    )
    relanded = (
        tuesday_events.filter(
            (pl.col("subject_id") == uid("purchase-3")) | (pl.col("type") == "chat.message")
        )
        .drop("landed_at")
        .to_dicts()
    )
    assert {event["type"] for event in relanded} >= {"purchase.completed", "chat.message"}
    land_friday_sale(tmp_path, "2026-11-06T23:00:00", relanded)

    assert_dbt_succeeds(tmp_path, "run")
    after = counts(tmp_path)

    assert after["marts.fct_revenue_splits"] == before["marts.fct_revenue_splits"] + 1
    # purchase.created, ledger.entry_posted, purchase.completed of the new sale and the new
    # answer's chat.message; the relanded events add nothing.
    assert after["staging.stg_events"] == before["staging.stg_events"] + 4
    assert after["staging.stg_chat_message"] == before["staging.stg_chat_message"] + 1
    assert after["marts.fct_chat_messages"] == before["marts.fct_chat_messages"] + 1
    assert llm_totals(tmp_path) == (
        answers_before + 1,
        input_before + 700,
        output_before + 80,
        cost_before + Decimal("0.000123"),
    )
    assert after["staging.stg_usage_beacons"] == before["staging.stg_usage_beacons"] + 1
    assert after["marts.fct_ledger_entries"] == before["marts.fct_ledger_entries"] + 4
    gmv_after, _ = money(tmp_path)
    assert gmv_after == gmv_before + 5000

    # Running again over the same files changes nothing.
    assert_dbt_succeeds(tmp_path, "run")
    assert counts(tmp_path) == after
    assert money(tmp_path)[0] == gmv_after
    assert llm_totals(tmp_path)[3] == cost_before + Decimal("0.000123")


USAGE_MARTS = ("marts.usage_by_period", "marts.project_usage_by_period", "marts.leaderboards")


def usage_marts(warehouse: Path) -> dict[str, list[tuple]]:
    with read_warehouse(warehouse) as connection:
        return {
            table: connection.execute(f"select * from {table} order by all").fetchall()
            for table in USAGE_MARTS
        }


def staged_at(warehouse: Path, grain: str, period_start: str, widget: str):
    with read_warehouse(warehouse) as connection:
        [(value,)] = connection.execute(
            "select staged_at from intermediate.int_usage_by_period "
            "where grain = ? and period_start = ? and widget_id = ?",
            [grain, period_start, uid(widget)],
        ).fetchall()
    return value


def widget_month(warehouse: Path, widget: str) -> tuple[int, int]:
    with read_warehouse(warehouse) as connection:
        return connection.execute(
            "select messages, visitors from marts.usage_by_period "
            "where grain = 'month' and period_start = '2026-11-01' and widget_id = ?",
            [uid(widget)],
        ).fetchone()


def test_an_incremental_build_recounts_only_the_touched_usage_periods_and_agrees_with_a_full_build(
    tmp_path: Path,
) -> None:
    land_marketplace_story(tmp_path)
    assert_dbt_succeeds(tmp_path, "run")
    wednesday_before = staged_at(tmp_path, "day", "2026-11-04", "widget-2")
    monday_before = staged_at(tmp_path, "day", "2026-11-02", "widget-1")
    messages_before, visitors_before = widget_month(tmp_path, "widget-2")

    # Friday's batch: widget-2 gets a message from a new visitor (its day, week and month are
    # recounted, distinct visitors included); a beacon widget-1 sent on Monday arrives only now
    # (Monday's day is recounted); a new widget appears on a project the events describe only in
    # a later batch (its builder must follow on every period once they do).
    friday = Story()
    friday.beacon(
        "widget-2",
        "sales-pal",
        "buyer-1",
        "message",
        "2026-11-06T10:00:00",
        visitor="visitor-9",
        session="s-9",
    )
    friday.beacon("widget-1", "support-bot", "buyer-1", "open", "2026-11-02T23:59:00", visitor="visitor-8")
    friday.beacon(
        "widget-9", "late-project", "buyer-2", "message", "2026-11-06T11:00:00", visitor="visitor-7"
    )
    friday.land(tmp_path, "2026-11-06T12:00:00")
    assert_dbt_succeeds(tmp_path, "run")

    assert staged_at(tmp_path, "day", "2026-11-04", "widget-2") == wednesday_before  # not recounted
    assert staged_at(tmp_path, "day", "2026-11-02", "widget-1") > monday_before
    assert widget_month(tmp_path, "widget-2") == (messages_before + 1, visitors_before + 1)

    saturday = Story()
    saturday.user_created("builder-9", ["builder"], "2026-11-07T09:00:00")
    saturday.project_created("late-project", "builder-9", "Late Project", "2026-11-07T09:01:00")
    saturday.land(tmp_path, "2026-11-07T12:00:00")
    assert_dbt_succeeds(tmp_path, "run")
    incremental = usage_marts(tmp_path)
    with read_warehouse(tmp_path) as connection:
        assert connection.execute(
            "select distinct builder_id from marts.usage_by_period where widget_id = ?", [uid("widget-9")]
        ).fetchall() == [(uid("builder-9"),)]

    assert_dbt_succeeds(tmp_path, "run", "--full-refresh")
    assert usage_marts(tmp_path) == incremental
