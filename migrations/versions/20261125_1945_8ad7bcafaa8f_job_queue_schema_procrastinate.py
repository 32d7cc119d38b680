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
    # Everything procrastinate created is named procrastinate_*: tables, functions and types.
    op.execute(
        """
        DO $$
        DECLARE obj record;
        BEGIN
            FOR obj IN SELECT tablename FROM pg_tables
                       WHERE schemaname = 'public' AND tablename LIKE 'procrastinate%' LOOP
                EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', obj.tablename);
            END LOOP;
            FOR obj IN SELECT p.oid::regprocedure AS sig FROM pg_proc p
                       JOIN pg_namespace n ON n.oid = p.pronamespace
                       WHERE n.nspname = 'public' AND p.proname LIKE 'procrastinate%' LOOP
                EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', obj.sig);
            END LOOP;
            FOR obj IN SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                       WHERE n.nspname = 'public' AND t.typname LIKE 'procrastinate%' AND t.typtype IN ('e', 'c') LOOP
                EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', obj.typname);
            END LOOP;
        END $$;
        """
    )
