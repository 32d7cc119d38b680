"""Where the warehouse keeps its files (``docs/data-platform.md``).

The worker writes ``landing/``, dbt and Dagster own ``build/``, the publish step writes
``serve/<version>/`` and flips ``serve/current``; the API and analysts only ever read a
published version. Every process derives the paths from ``WAREHOUSE_DIR`` through this class.
"""

import os
from dataclasses import dataclass
from pathlib import Path

LANDING_STREAMS = ("events", "usage")
SERVE_FILE = "warehouse.duckdb"


@dataclass(frozen=True)
class WarehouseLayout:
    root: Path

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    def landing_stream(self, stream: str) -> Path:
        if stream not in LANDING_STREAMS:
            raise ValueError(f"unknown landing stream {stream!r}")
        return self.landing / stream

    @property
    def build_file(self) -> Path:
        """dbt's database. Only dbt and Dagster open it: DuckDB locks it while they write."""
        return self.root / "build" / "warehouse.duckdb"

    @property
    def serve(self) -> Path:
        return self.root / "serve"

    @property
    def current_link(self) -> Path:
        return self.serve / "current"

    def version_dir(self, version: str) -> Path:
        return self.serve / version

    def served_file(self, version: str) -> Path:
        return self.version_dir(version) / SERVE_FILE

    def current_version(self) -> str | None:
        """The version ``serve/current`` points at, or ``None`` before the first publish."""
        try:
            target = os.readlink(self.current_link)
        except (FileNotFoundError, OSError):
            return None
        version = Path(target).name
        return version if self.served_file(version).exists() else None
