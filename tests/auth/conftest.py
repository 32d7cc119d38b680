"""Settings changes for one test: parametrize ``settings_changes`` and the ``app`` and ``client``
fixtures run with the changed settings (same database, cleanup and Redis prefix).

    @pytest.mark.parametrize("settings_changes", [{"redis_url": None}])
"""

from typing import Any

import pytest

from app.core.config import Settings


@pytest.fixture
def settings_changes() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings(settings: Settings, settings_changes: dict[str, Any]) -> Settings:
    return settings.model_copy(update=settings_changes)
