"""LLM providers, models and project chats

Revision ID: a1f0c0de0003
Revises: a1f0c0de0002
Create Date: 2026-11-26 03:02:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'a1f0c0de0003'
down_revision: str | None = 'a1f0c0de0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('llm_providers',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('base_url', sa.String(length=500), nullable=False),
    sa.Column('api_key_encrypted', sa.Text(), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("kind IN ('openai_compatible', 'anthropic')", name=op.f('ck_llm_providers_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_llm_providers')),
    sa.UniqueConstraint('name', name=op.f('uq_llm_providers_name'))
    )
    op.create_table('llm_models',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('provider_id', sa.Uuid(), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('input_price_per_mtok', sa.Numeric(precision=12, scale=6), nullable=True),
    sa.Column('output_price_per_mtok', sa.Numeric(precision=12, scale=6), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['provider_id'], ['llm_providers.id'], name=op.f('fk_llm_models_provider_id_llm_providers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_llm_models')),
    sa.UniqueConstraint('key', name=op.f('uq_llm_models_key'))
    )
    op.create_index(op.f('ix_llm_models_provider_id'), 'llm_models', ['provider_id'], unique=False)
    op.create_table('project_chats',
    sa.Column('project_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=True),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('widget_id', sa.Uuid(), nullable=True),
    sa.Column('visitor_id', sa.String(length=100), nullable=True),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("channel IN ('studio', 'widget')", name=op.f('ck_project_chats_channel')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], name=op.f('fk_project_chats_project_id_projects')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_project_chats_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_project_chats'))
    )
    op.create_index('ix_project_chats_project_channel_updated', 'project_chats', ['project_id', 'channel', 'updated_at'], unique=False)
    op.create_index(op.f('ix_project_chats_user_id'), 'project_chats', ['user_id'], unique=False)
    op.create_index(op.f('ix_project_chats_widget_id'), 'project_chats', ['widget_id'], unique=False)
    op.create_table('chat_messages',
    sa.Column('chat_id', sa.Uuid(), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.CheckConstraint("role IN ('user', 'assistant')", name=op.f('ck_chat_messages_role')),
    sa.ForeignKeyConstraint(['chat_id'], ['project_chats.id'], name=op.f('fk_chat_messages_chat_id_project_chats'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_messages'))
    )
    op.create_index('ix_chat_messages_chat_created', 'chat_messages', ['chat_id', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_chat_messages_chat_created', table_name='chat_messages')
    op.drop_table('chat_messages')
    op.drop_index(op.f('ix_project_chats_widget_id'), table_name='project_chats')
    op.drop_index(op.f('ix_project_chats_user_id'), table_name='project_chats')
    op.drop_index('ix_project_chats_project_channel_updated', table_name='project_chats')
    op.drop_table('project_chats')
    op.drop_index(op.f('ix_llm_models_provider_id'), table_name='llm_models')
    op.drop_table('llm_models')
    op.drop_table('llm_providers')
