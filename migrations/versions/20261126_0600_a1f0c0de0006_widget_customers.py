"""Widget conversations remember the verified customer (the host site's user id)

Revision ID: a1f0c0de0006
Revises: a1f0c0de0005
Create Date: 2026-11-26 06:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a1f0c0de0006"
down_revision: str | None = "a1f0c0de0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("project_chats", sa.Column("customer_id", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_project_chats_widget_customer",
        "project_chats",
        ["widget_id", "customer_id"],
        unique=False,
        postgresql_where=sa.text("customer_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_project_chats_widget_customer",
        table_name="project_chats",
        postgresql_where=sa.text("customer_id IS NOT NULL"),
    )
    op.drop_column("project_chats", "customer_id")
