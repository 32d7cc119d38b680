"""The whole pipeline on generated landing events: compaction, dbt build with its tests, publish.

This runs the real dbt project: a build takes a minute or more on a busy machine.
"""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal

import dagster as dg
import duckdb

from pipelines.assets import landing, served_marts, warehouse_models
from pipelines.dbt_project import dbt_cli_resource, dbt_target_path
from pipelines.jobs import warehouse_refresh_job
from pipelines.publish import published_versions
from tests.pipelines.landing_events import Marketplace, write_part


def served(layout, sql):
    with duckdb.connect(str(layout.current_link / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


def materialize(warehouse, selection=None):
    assets = [landing, warehouse_models, served_marts]
    return dg.materialize(
        assets,
        selection=selection,
        resources={"warehouse": warehouse, "dbt": dbt_cli_resource()},
        raise_on_error=False,
    )


def messages_served(layout, market):
    [(messages,)] = served(
        layout,
        "SELECT coalesce(sum(messages), 0) FROM marts.usage_by_period "
        f"WHERE grain = 'day' AND widget_id = '{market.widget_id}'",
    )
    return messages


def llm_served(layout, market):
    [row] = served(
        layout,
        "SELECT coalesce(sum(answers), 0), coalesce(sum(input_tokens), 0), coalesce(sum(cost_usd), 0) "
        f"FROM marts.llm_usage_daily WHERE project_id = '{market.project_id}'",
    )
    return row


def invocation_log_mentions(layout, event_name):
    """Whether the latest dbt invocation on this warehouse logged an event of this name."""
    target = dbt_target_path(layout)
    invocation = json.loads((target / "run_results.json").read_text())["metadata"]["invocation_id"]
    for text in (target / "dbt.log").read_text().splitlines():
        line = json.loads(text)
        if line["info"].get("invocation_id") == invocation and line["info"]["name"] == event_name:
            return True
    return False


def test_landed_events_are_built_checked_published_and_refreshed_from_dagster_and_the_command_line(
    layout, warehouse
):
    market = Marketplace()
    now = datetime.now(UTC)
    tested = market.studio_answer(input_tokens=1200, output_tokens=300, cost_usd="0.000360")
    unpriced = market.studio_answer(input_tokens=50, output_tokens=5, cost_usd=None)
    write_part(layout, "events", [*market.sign_ups_and_sale(), tested, unpriced], landed_at=now, age_s=600)
    for _ in range(3):
        write_part(layout, "usage", market.messages(2), landed_at=now, age_s=600)

    # What the `warehouse_refresh` job selects: every asset, and the dbt tests tagged `refresh`.
    first = materialize(warehouse, selection=warehouse_refresh_job.selection)

    assert first.success
    version = layout.current_version()
    assert version is not None
    [(meta_version, as_of, run_id)] = served(layout, "SELECT version, as_of, run_id FROM marts.serve_meta")
    assert (meta_version, run_id) == (version, first.run_id)
    assert as_of == now  # the newest landed_at built
    tables = {name for (name,) in served(layout, "SELECT table_name FROM duckdb_tables()")}
    assert {"revenue_daily", "usage_by_period", "leaderboards", "dim_projects", "serve_meta"} <= tables
    assert messages_served(layout, market) == 6
    assert llm_served(layout, market) == (2, 1250, Decimal("0.000360"))
    assert served(
        layout, f"SELECT sum(gross_minor) FROM marts.revenue_daily WHERE project_id = '{market.project_id}'"
    ) == [(1000,)]
    # The three small usage files were merged before dbt read them.
    assert len(list(layout.landing_stream("usage").glob("dt=*/*.parquet"))) == 1
    # The refresh's dbt tests ran as asset checks (the singular ones too) and none failed: the
    # purchases reconcile with the ledger only at `warn` (this sale has no ledger legs). Only the
    # marts' key and money tests ran; the daily full build runs every not_null and the others.
    checks = first.get_asset_check_evaluations()
    names = {check.check_name for check in checks}
    assert {check.check_name for check in checks if not check.passed} == {"purchases_reconcile_with_ledger"}
    assert all(check.passed or check.severity == dg.AssetCheckSeverity.WARN for check in checks)
    assert {
        "revenue_daily_matches_splits",
        "unique_combination_usage_by_period_grain__period_start__widget_id",
    } <= names
    assert not any(name.startswith(("not_null", "accepted_values", "relationships")) for name in names)

    # More usage lands (one beacon delivered twice); `bazaar warehouse-build` builds incrementally
    # and serves it from a new version.
    again = market.messages(3)
    write_part(layout, "usage", again, landed_at=datetime.now(UTC))
    write_part(layout, "usage", again[:1], landed_at=datetime.now(UTC))
    # A builder test chat answered, and the first one relanded (counted once).
    write_part(
        layout,
        "events",
        [market.studio_answer(input_tokens=800, output_tokens=100, cost_usd="0.000180"), tested],
        landed_at=datetime.now(UTC),
    )
    done = subprocess.run(
        [sys.executable, "-m", "app", "warehouse-build"],
        env={**os.environ, "WAREHOUSE_DIR": str(layout.root), "WAREHOUSE_KEEP_VERSIONS": "2"},
        capture_output=True,
        text=True,
        timeout=900,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    second = layout.current_version()
    assert second not in (None, version)
    assert f"published {second}" in done.stdout
    assert "[2/3] dbt build --selector refresh" in done.stdout
    # Builds of one warehouse share a dbt target folder, so this one reused the last parse.
    assert not invocation_log_mentions(layout, "UnableToPartialParse")
    assert invocation_log_mentions(layout, "PartialParsingEnabled")
    assert messages_served(layout, market) == 9
    assert llm_served(layout, market) == (3, 2050, Decimal("0.000540"))
    with duckdb.connect(str(layout.served_file(version)), read_only=True) as con:
        # The version readers had open is untouched.
        assert con.execute(
            "SELECT sum(messages) FROM marts.usage_by_period WHERE grain = 'day'"
        ).fetchone() == (6,)

    # A publish-only run: a third version, and the first is pruned (WAREHOUSE_KEEP_VERSIONS 2 here).
    third = materialize(warehouse, selection=[served_marts])
    assert third.success
    assert published_versions(layout) == [second, layout.current_version()]
