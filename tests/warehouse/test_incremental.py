"""The warehouse from empty to incremental: a build on no files works, later builds read only
the landing partitions since their watermark, and re-running changes nothing."""

from decimal import Decimal
from pathlib import Path

import polars as pl

from tests.warehouse.conftest import assert_dbt_succeeds, read_warehouse
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
