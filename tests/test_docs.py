"""The docs stay true: the README's configuration table matches Settings."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_configuration_table_lists_every_setting_as_generated():
    table = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "settings_table.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    readme = (ROOT / "README.md").read_text()
    assert table in readme, "README is stale: run scripts/settings_table.py --update README.md"
    from app.core.config import Settings

    for name in Settings.model_fields:
        assert f"`{name.upper()}`" in table, name
