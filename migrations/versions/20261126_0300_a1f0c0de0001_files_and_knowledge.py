"""files, file processings and knowledge chunks

Revision ID: a1f0c0de0001
Revises: d9836cb8e286
Create Date: 2026-11-26 03:00:00+00:00
"""

from collections.abc import Sequence

revision: str = 'a1f0c0de0001'
down_revision: str | None = 'd9836cb8e286'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
