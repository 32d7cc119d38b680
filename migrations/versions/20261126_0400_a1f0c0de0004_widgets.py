"""Embeddable chat widgets and their monthly message counters; widget quota per plan

Revision ID: a1f0c0de0004
Revises: a1f0c0de0003
Create Date: 2026-11-26 04:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a1f0c0de0004"
down_revision: str | None = "a1f0c0de0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Messages a month a plan's user's widgets of one project may answer together (plan limit
# `widgetMessagesPerMonth`).
WIDGET_MESSAGES_PER_MONTH = {"free": 500, "pro": 10_000, "business": 100_000}


def upgrade() -> None:
    op.create_table(
        "widgets",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("builder_id", sa.Uuid(), nullable=False),
        sa.Column("purchase_id", sa.Uuid(), nullable=True),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("secret_rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("appearance", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("behaviour", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("kind IN ('live', 'preview')", name=op.f("ck_widgets_kind")),
        sa.ForeignKeyConstraint(["builder_id"], ["users.id"], name=op.f("fk_widgets_builder_id_users")),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name=op.f("fk_widgets_project_id_projects")),
        sa.ForeignKeyConstraint(
            ["purchase_id"], ["purchases.id"], name=op.f("fk_widgets_purchase_id_purchases")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_widgets_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_widgets")),
        sa.UniqueConstraint("public_key", name=op.f("uq_widgets_public_key")),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_widgets_user_idempotency_key"),
    )
    op.create_index(op.f("ix_widgets_project_id"), "widgets", ["project_id"], unique=False)
    op.create_index(op.f("ix_widgets_user_id"), "widgets", ["user_id"], unique=False)
    op.create_table(
        "widget_usage",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("warned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reached_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("messages >= 0", name=op.f("ck_widget_usage_messages_not_negative")),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_widget_usage_project_id_projects")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_widget_usage_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", "project_id", "month", name=op.f("pk_widget_usage")),
    )
    for plan, messages in WIDGET_MESSAGES_PER_MONTH.items():
        op.execute(
            sa.text(
                "UPDATE plans SET limits = limits"
                " || jsonb_build_object('widgetMessagesPerMonth', CAST(:n AS integer)) WHERE code = :plan"
            ).bindparams(n=messages, plan=plan)
        )


def downgrade() -> None:
    op.execute("UPDATE plans SET limits = limits - 'widgetMessagesPerMonth'")
    op.drop_table("widget_usage")
    op.drop_index(op.f("ix_widgets_user_id"), table_name="widgets")
    op.drop_index(op.f("ix_widgets_project_id"), table_name="widgets")
    op.drop_table("widgets")
