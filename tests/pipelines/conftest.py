"""A temporary warehouse for every pipeline test, reached the way production reaches it:
``WAREHOUSE_DIR`` (settings) and the ``warehouse`` resource built from it."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.config import get_settings
from app.core.warehouse_layout import WarehouseLayout
from pipelines.resources import WarehouseResource


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WarehouseLayout]:
    root = tmp_path / "warehouse"
    root.mkdir()
    monkeypatch.setenv("WAREHOUSE_DIR", str(root))
    get_settings.cache_clear()
    yield WarehouseLayout(root)
    get_settings.cache_clear()


@pytest.fixture
def warehouse(layout: WarehouseLayout) -> WarehouseResource:
    # keep_versions 2 (the smallest Settings allows) so a test sees pruning after three publishes.
    return WarehouseResource(root=str(layout.root), keep_versions=2, settle_seconds=60)
