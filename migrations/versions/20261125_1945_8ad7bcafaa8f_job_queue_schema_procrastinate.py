"""job queue schema (procrastinate)

Revision ID: 8ad7bcafaa8f
Revises: 4e75e96ba530
Create Date: 2026-11-25 19:45:08.423765+00:00
"""

from collections.abc import Sequence

from alembic import op
from procrastinate.schema import SchemaManager

revision: str = '8ad7bcafaa8f'
down_revision: str | None = '4e75e96ba530'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The schema of the pinned procrastinate version; upgrading procrastinate means adding a
    # migration that applies its own migration scripts for the versions in between.
    op.execute(SchemaManager.get_schema())


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs, "
               "procrastinate_workers CASCADE")
