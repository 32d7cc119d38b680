"""Notifications: inbox, templates, preferences, email deliveries, broadcasts; outbox notified_at

Events recorded before this revision are marked notified: they happened before anyone could be
told, and a welcome for every existing account would be noise.

Revision ID: a1f0c0de0005
Revises: a1f0c0de0004
Create Date: 2026-11-26 05:30:06.528235+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "a1f0c0de0005"
down_revision: str | None = "a1f0c0de0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_broadcasts",
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("audience", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("send_email", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("cursor_user_id", sa.Uuid(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done')", name=op.f("ck_notification_broadcasts_status")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"], ["users.id"], name=op.f("fk_notification_broadcasts_created_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_broadcasts")),
        sa.UniqueConstraint("created_by", "idempotency_key", name="uq_notification_broadcasts_idempotency"),
    )
    op.create_table(
        "notification_preferences",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("in_app", sa.Boolean(), nullable=False),
        sa.Column("email", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notification_preferences_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "category", name=op.f("pk_notification_preferences")),
    )
    op.create_table(
        "notification_templates",
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("variables", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("source_hash", sa.String(length=64), nullable=True),
        sa.Column("edited_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["edited_by"], ["users.id"], name=op.f("fk_notification_templates_edited_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_templates")),
        sa.UniqueConstraint("type", name=op.f("uq_notification_templates_type")),
    )
    op.create_table(
        "notifications",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_event_id", sa.Uuid(), nullable=True),
        sa.Column("broadcast_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["notification_broadcasts.id"],
            name=op.f("fk_notifications_broadcast_id_notification_broadcasts"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_notifications_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("user_id", "broadcast_id", name="uq_notifications_user_broadcast"),
        sa.UniqueConstraint("user_id", "source_event_id", "type", name="uq_notifications_user_event_type"),
    )
    op.create_index("ix_notifications_user_created", "notifications", ["user_id", "created_at"], unique=False)
    op.create_index(
        "ix_notifications_user_unread",
        "notifications",
        ["user_id", "created_at"],
        unique=False,
        postgresql_where="read_at IS NULL",
    )
    op.create_table(
        "email_deliveries",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("notification_id", sa.Uuid(), nullable=True),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("to_address", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_event_id", sa.Uuid(), nullable=True),
        sa.Column("broadcast_id", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'retrying', 'sent', 'dead', 'skipped')",
            name=op.f("ck_email_deliveries_status"),
        ),
        sa.ForeignKeyConstraint(
            ["broadcast_id"],
            ["notification_broadcasts.id"],
            name=op.f("fk_email_deliveries_broadcast_id_notification_broadcasts"),
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_email_deliveries_notification_id_notifications"),
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_email_deliveries_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_email_deliveries")),
        sa.UniqueConstraint("user_id", "broadcast_id", name="uq_email_deliveries_user_broadcast"),
        sa.UniqueConstraint("user_id", "source_event_id", "type", name="uq_email_deliveries_user_event_type"),
    )
    op.create_index(
        "ix_email_deliveries_status",
        "email_deliveries",
        ["status"],
        unique=False,
        postgresql_where="status IN ('pending', 'retrying')",
    )
    op.create_index(op.f("ix_email_deliveries_user_id"), "email_deliveries", ["user_id"], unique=False)
    op.add_column("outbox_events", sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE outbox_events SET notified_at = now() WHERE notified_at IS NULL")
    op.create_index(
        "ix_outbox_events_unnotified",
        "outbox_events",
        ["event_id"],
        unique=False,
        postgresql_where="notified_at IS NULL",
    )


def downgrade() -> None:
    op.drop_index(
        "ix_outbox_events_unnotified", table_name="outbox_events", postgresql_where="notified_at IS NULL"
    )
    op.drop_column("outbox_events", "notified_at")
    op.drop_index(op.f("ix_email_deliveries_user_id"), table_name="email_deliveries")
    op.drop_index(
        "ix_email_deliveries_status",
        table_name="email_deliveries",
        postgresql_where="status IN ('pending', 'retrying')",
    )
    op.drop_table("email_deliveries")
    op.drop_index(
        "ix_notifications_user_unread", table_name="notifications", postgresql_where="read_at IS NULL"
    )
    op.drop_index("ix_notifications_user_created", table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("notification_templates")
    op.drop_table("notification_preferences")
    op.drop_table("notification_broadcasts")
