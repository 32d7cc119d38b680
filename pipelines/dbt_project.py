"""The dbt project in ``dbt/`` as Dagster sees it, and the manifest its assets are built from."""

import fcntl
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject

from app.core.warehouse_layout import LANDING_STREAMS
from pipelines.resources import WarehouseResource, warehouse_resource

MARTS_SCHEMA = "marts"
DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)

# `make run` starts .venv/bin/bazaar without .venv/bin on PATH: use the dbt installed beside us.
_DBT_BESIDE_PYTHON = Path(sys.executable).parent / "dbt"
DBT_EXECUTABLE = str(_DBT_BESIDE_PYTHON) if _DBT_BESIDE_PYTHON.exists() else "dbt"


def dbt_cli_resource(project: DbtProject | None = None) -> DbtCliResource:
    return DbtCliResource(project_dir=project or dbt_project, dbt_executable=DBT_EXECUTABLE)


# Folders dbt writes into: their changes never make the manifest stale.
_GENERATED = {"target", "logs", "dbt_packages"}


def manifest_is_stale(project: DbtProject = dbt_project) -> bool:
    manifest = project.manifest_path
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    for path in project.project_dir.rglob("*"):
        relative = path.relative_to(project.project_dir)
        if relative.parts[0] in _GENERATED or not path.is_file():
            continue
        if path.suffix in {".sql", ".yml", ".yaml", ".csv", ".py", ".md"} and path.stat().st_mtime > built:
            return True
    return False


def ensure_manifest(warehouse: WarehouseResource | None = None, project: DbtProject = dbt_project) -> Path:
    """``dbt parse`` when the manifest is missing or older than a project file, so the code
    location always loads the models as they are on disk (the webserver, the daemon and every
    run load it; a fresh manifest is reused in about a millisecond). Parsing needs
    ``WAREHOUSE_DIR`` because profiles.yml reads it."""
    if not manifest_is_stale(project):
        return project.manifest_path
    lock_path = project.project_dir / project.target_path / ".parse.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # The webserver, the daemon and their code servers load the location at the same moment:
    # one parses, the others wait and then find the manifest fresh.
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if manifest_is_stale(project):
            with (warehouse or warehouse_resource()).dbt_environment():
                dbt_cli_resource(project).cli(["parse", "--quiet"], target_path=project.target_path).wait()
    return project.manifest_path


class WarehouseDbtTranslator(DagsterDbtTranslator):
    """dbt's sources over the landing Parquet are the landing assets compaction maintains, so
    the asset graph reads landing -> staging -> intermediate -> marts -> served marts."""

    def __init__(self) -> None:
        super().__init__(DagsterDbtTranslatorSettings(enable_asset_checks=True))

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            table = dbt_resource_props.get("identifier") or dbt_resource_props["name"]
            if table in LANDING_STREAMS:
                return dg.AssetKey(["landing", table])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "warehouse"
