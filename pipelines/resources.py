"""Resources of the code location, configured from the same ``Settings`` as the API and worker."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import Field

from app.core.config import Settings, get_settings
from app.core.warehouse_layout import WarehouseLayout


class WarehouseResource(dg.ConfigurableResource["WarehouseResource"]):
    """The warehouse tree (``WAREHOUSE_DIR``) and how the pipeline treats it."""

    root: str = Field(description="Warehouse root: landing/, build/, serve/.")
    keep_versions: int = Field(3, description="Published versions kept under serve/.")
    settle_seconds: float = Field(
        60.0, description="Landing files younger than this are left out of compaction."
    )

    @property
    def layout(self) -> WarehouseLayout:
        # Absolute: dbt runs in dbt/, the webserver and daemon wherever they were started.
        return WarehouseLayout(Path(self.root).resolve())

    @contextmanager
    def dbt_environment(self) -> Iterator[None]:
        """``WAREHOUSE_DIR`` for the dbt process this step starts, and its build folder.

        ``DbtCliResource`` hands dbt a copy of ``os.environ`` and no other way to add a variable;
        profiles.yml and the sources read ``WAREHOUSE_DIR`` from it, so it must be this
        resource's absolute root, whatever the environment of the Dagster process says."""
        layout = self.layout
        layout.build_file.parent.mkdir(parents=True, exist_ok=True)  # DuckDB creates no folders
        previous = os.environ.get("WAREHOUSE_DIR")
        os.environ["WAREHOUSE_DIR"] = str(layout.root)
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("WAREHOUSE_DIR", None)
            else:
                os.environ["WAREHOUSE_DIR"] = previous


def warehouse_resource(settings: Settings | None = None) -> WarehouseResource:
    settings = settings or get_settings()
    return WarehouseResource(
        root=str(settings.warehouse_dir.resolve()),
        keep_versions=settings.warehouse_keep_versions,
        settle_seconds=60.0,
    )
