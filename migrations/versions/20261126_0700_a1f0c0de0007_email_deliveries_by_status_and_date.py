"""Email deliveries by status and date: the administrators' dead letters, newest first

Revision ID: a1f0c0de0007
Revises: a1f0c0de0006
Create Date: 2026-11-26 07:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a1f0c0de0007"
down_revision: str | None = "a1f0c0de0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_email_deliveries_status_created", "email_deliveries", ["status", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_email_deliveries_status_created", table_name="email_deliveries")
