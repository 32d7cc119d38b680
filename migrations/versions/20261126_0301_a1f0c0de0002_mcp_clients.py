"""MCP clients and their connection checks

Revision ID: a1f0c0de0002
Revises: a1f0c0de0001
Create Date: 2026-11-26 03:01:00+00:00
"""

from collections.abc import Sequence

revision: str = 'a1f0c0de0002'
down_revision: str | None = 'a1f0c0de0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
