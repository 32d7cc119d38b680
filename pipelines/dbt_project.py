"""The dbt project in ``dbt/`` as Dagster sees it, and the manifest its assets are built from."""

import fcntl
import json
import sys
from collections.abc import Mapping, Sequence
from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject
from dagster_dbt.asset_utils import get_asset_check_key_for_test
from packaging.version import Version

from app.core.warehouse_layout import LANDING_STREAMS, WarehouseLayout
from pipelines.resources import WarehouseResource, warehouse_resource

MARTS_SCHEMA = "marts"
DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)

# `make run` starts .venv/bin/bazaar without .venv/bin on PATH: use the dbt installed beside us.
_DBT_BESIDE_PYTHON = Path(sys.executable).parent / "dbt"
DBT_EXECUTABLE = str(_DBT_BESIDE_PYTHON) if _DBT_BESIDE_PYTHON.exists() else "dbt"


# The YAML selector (dbt/selectors.yml) of a near-real-time refresh: every model, and only the
# tests tagged `refresh` (the marts' keys and money); the daily full build runs every test.
REFRESH_SELECTOR = "refresh"
REFRESH_TAG = "refresh"


class WarehouseDbtResource(DbtCliResource):
    """``DbtCliResource`` without the two things it does in the run's own process before every
    dbt invocation that these assets have no use for, each seconds of CPU on every refresh (and
    several times that in wall time on a loaded 2-core host):

    * ``dbt --version`` in a new process (importing dbt) to learn the version: the executable is
      the dbt-core installed beside us (``DBT_EXECUTABLE``), so its version is the package's;
    * loading dbt's profile, project and adapter in this process, which dagster-dbt needs only to
      fetch column metadata or row counts, never asked for here (about 1 s of CPU).

    Both are dagster-dbt's private hooks (``_cli_version``, ``_initialize_dbt_core_adapter``);
    tests/pipelines checks that they are still there and used."""

    @cached_property
    def _cli_version(self) -> Version:
        if self.dbt_executable != DBT_EXECUTABLE:
            return super()._cli_version
        return Version(installed_version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> Any:
        return None


def dbt_cli_resource(project: DbtProject | None = None) -> DbtCliResource:
    project = project or dbt_project
    return WarehouseDbtResource(
        project_dir=str(project.project_dir),
        profiles_dir=str(project.profiles_dir),
        dbt_executable=DBT_EXECUTABLE,
    )


def dbt_build_args(*, full_refresh: bool) -> list[str]:
    """``dbt build`` of the daily full build (every model rebuilt, every test) or of a refresh."""
    return ["build", "--full-refresh"] if full_refresh else ["build", "--selector", REFRESH_SELECTOR]


def dbt_target_path(layout: WarehouseLayout) -> Path:
    """dbt's artifacts and log for builds of this warehouse: one folder, reused by every build.

    dbt parses the project only partially when the previous build's ``partial_parse.msgpack``
    is at hand and was made with the same profile (the profile names the warehouse's build file),
    so builds of one warehouse share this folder: a refresh then spends about a second parsing
    instead of 10. Warehouse runs never overlap (``jobs.py``), so they never write it at
    the same time, and it does not grow with every run as dagster-dbt's default (a new folder
    under ``dbt/target/`` per invocation) does."""
    return layout.build_file.parent / "dbt-target"


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


def refresh_check_keys(project: DbtProject = dbt_project) -> list[dg.AssetCheckKey]:
    """The asset checks of the dbt tests tagged ``refresh``: the ones a refresh run executes.

    The refresh job selects these checks and no others, so dagster-dbt runs the selected models
    with exactly these tests (and Dagster expects no result from the others)."""
    manifest = json.loads(ensure_manifest(project=project).read_text())
    translator = WarehouseDbtTranslator()
    keys = (
        get_asset_check_key_for_test(manifest, translator, unique_id, project)
        for unique_id, node in manifest["nodes"].items()
        if node["resource_type"] == "test" and REFRESH_TAG in node.get("tags", [])
    )
    return sorted((key for key in keys if key is not None), key=lambda key: key.to_user_string())
