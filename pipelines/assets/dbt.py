"""Every model of ``dbt/`` as an asset; its tests become asset checks."""

import json
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from pipelines.dbt_project import (
    MARTS_SCHEMA,
    WarehouseDbtTranslator,
    dbt_project,
    dbt_target_path,
    ensure_manifest,
)
from pipelines.jobs import DBT_OP, WAREHOUSE_POOL, WarehouseBuildConfig
from pipelines.resources import WarehouseResource


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    name=DBT_OP,
    dagster_dbt_translator=WarehouseDbtTranslator(),
    pool=WAREHOUSE_POOL,
)
def warehouse_models(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    warehouse: WarehouseResource,
    config: WarehouseBuildConfig,
) -> Iterator[Any]:
    # `build` runs each model's tests right after it, so a failing test stops its dependents and
    # the publish step: the API keeps serving the last good version. Which models and tests run
    # follows the run's selection (dagster-dbt adds it): the refresh job selects every model and
    # the tests tagged `refresh`, the daily full build everything.
    # Unit tests check the SQL, not the data: the full build (and `make test`) runs them.
    args = (
        ["build", "--full-refresh"]
        if config.full_refresh
        else ["build", "--exclude", "resource_type:unit_test"]
    )
    with warehouse.dbt_environment():
        target_path = dbt_target_path(warehouse.layout)
        yield from dbt.cli(args, context=context, target_path=target_path).stream()


def mart_keys() -> list[dg.AssetKey]:
    """The models dbt builds into schema ``marts``: what the publish step copies."""
    manifest = json.loads(dbt_project.manifest_path.read_text())
    translator = WarehouseDbtTranslator()
    return sorted(
        (
            translator.get_asset_key(node)
            for node in manifest["nodes"].values()
            if node["resource_type"] in {"model", "seed", "snapshot"}
            and node["config"].get("schema") == MARTS_SCHEMA
            and node["config"].get("materialized") != "ephemeral"
        ),
        key=lambda key: key.to_user_string(),
    )
