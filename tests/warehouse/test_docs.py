"""Analysts browse the models' documentation with `dbt docs generate` / `dbt docs serve`."""

import json
from pathlib import Path

from tests.warehouse.conftest import assert_dbt_succeeds


def test_docs_generate_documents_every_mart(story_warehouse: Path) -> None:
    assert_dbt_succeeds(story_warehouse, "docs", "generate")

    catalog = json.loads((story_warehouse / "dbt-target" / "catalog.json").read_text())
    documented = {
        node["metadata"]["name"]
        for node in catalog["nodes"].values()
        if node["metadata"]["schema"] == "marts"
    }
    assert {"fct_revenue_splits", "platform_money_daily", "leaderboards", "usage_by_period"} <= documented
    leaderboards = next(n for n in catalog["nodes"].values() if n["metadata"]["name"] == "leaderboards")
    assert {"board", "grain", "period_start", "currency", "rank", "entity_id", "value"} <= set(
        leaderboards["columns"]
    )
