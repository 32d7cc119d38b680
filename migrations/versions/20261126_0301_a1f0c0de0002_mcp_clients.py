"""MCP clients and their connection checks

Revision ID: a1f0c0de0002
Revises: a1f0c0de0001
Create Date: 2026-11-26 03:01:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a1f0c0de0002"
down_revision: str | None = "a1f0c0de0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mcp_clients",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("connection_type", sa.String(length=20), nullable=False),
        sa.Column("connection_string", sa.String(length=2000), nullable=True),
        sa.Column("command", sa.String(length=500), nullable=True),
        sa.Column("args", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("headers_encrypted", sa.Text(), nullable=True),
        sa.Column("custom_vars_encrypted", sa.Text(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "connection_type IN ('stdio', 'sse', 'streamable_http', 'http')",
            name=op.f("ck_mcp_clients_connection_type"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_mcp_clients_created_by_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mcp_clients")),
    )
    op.create_index("uq_mcp_clients_lower_name", "mcp_clients", [sa.text("lower(name)")], unique=True)
    op.create_table(
        "mcp_connections",
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("transport", sa.String(length=20), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("tools", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint("status IN ('connected', 'failed')", name=op.f("ck_mcp_connections_status")),
        sa.CheckConstraint("trigger IN ('test', 'health')", name=op.f("ck_mcp_connections_trigger")),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["mcp_clients.id"],
            name=op.f("fk_mcp_connections_client_id_mcp_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mcp_connections")),
    )
    op.create_index(
        "ix_mcp_connections_client_checked", "mcp_connections", ["client_id", "checked_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_mcp_connections_client_checked", table_name="mcp_connections")
    op.drop_table("mcp_connections")
    op.drop_index("uq_mcp_clients_lower_name", table_name="mcp_clients")
    op.drop_table("mcp_clients")
