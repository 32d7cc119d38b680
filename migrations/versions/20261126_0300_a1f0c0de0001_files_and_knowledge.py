"""files, file processings and knowledge chunks

Revision ID: a1f0c0de0001
Revises: d9836cb8e286
Create Date: 2026-11-26 03:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'a1f0c0de0001'
down_revision: str | None = 'd9836cb8e286'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Largest knowledge file per plan, in bytes (the same sizes as the plans' `maxFileMb`).
MAX_FILE_BYTES = {"free": 10 * 1024 * 1024, "pro": 50 * 1024 * 1024, "business": 200 * 1024 * 1024}


def upgrade() -> None:
    op.create_table(
        'files',
        sa.Column('project_id', sa.Uuid(), nullable=False),
        sa.Column('uploader_id', sa.Uuid(), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('media_type', sa.String(length=100), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('storage_key', sa.String(length=255), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('chunk_count', sa.Integer(), nullable=False),
        sa.Column('char_count', sa.BigInteger(), nullable=False),
        sa.Column('uploaded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.CheckConstraint("kind IN ('pdf', 'docx', 'txt', 'md', 'html', 'csv', 'json')", name=op.f('ck_files_kind')),
        sa.CheckConstraint('size >= 0', name=op.f('ck_files_size_not_negative')),
        sa.CheckConstraint(
            "status IN ('uploaded', 'queued', 'processing', 'ready', 'failed')", name=op.f('ck_files_status')
        ),
        sa.ForeignKeyConstraint(
            ['project_id'], ['projects.id'], name=op.f('fk_files_project_id_projects'), ondelete='CASCADE'
        ),
        sa.ForeignKeyConstraint(['uploader_id'], ['users.id'], name=op.f('fk_files_uploader_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_files')),
    )
    op.create_index(op.f('ix_files_project_id'), 'files', ['project_id'], unique=False)
    op.create_table(
        'file_processings',
        sa.Column('file_id', sa.Uuid(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'processing', 'ready', 'failed')", name=op.f('ck_file_processings_status')
        ),
        sa.ForeignKeyConstraint(
            ['file_id'], ['files.id'], name=op.f('fk_file_processings_file_id_files'), ondelete='CASCADE'
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_file_processings')),
    )
    op.create_index(op.f('ix_file_processings_file_id'), 'file_processings', ['file_id'], unique=False)
    op.create_table(
        'knowledge_chunks',
        sa.Column('file_id', sa.Uuid(), nullable=False),
        sa.Column('project_id', sa.Uuid(), nullable=False),
        sa.Column('ordinal', sa.Integer(), nullable=False),
        sa.Column('content', sa.Text(), nullable=False),
        sa.Column(
            'search', postgresql.TSVECTOR(), sa.Computed("to_tsvector('english', content)", persisted=True),
            nullable=False,
        ),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ['file_id'], ['files.id'], name=op.f('fk_knowledge_chunks_file_id_files'), ondelete='CASCADE'
        ),
        sa.ForeignKeyConstraint(
            ['project_id'], ['projects.id'], name=op.f('fk_knowledge_chunks_project_id_projects'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_knowledge_chunks')),
        sa.UniqueConstraint('file_id', 'ordinal', name='uq_knowledge_chunks_file_ordinal'),
    )
    op.create_index(op.f('ix_knowledge_chunks_project_id'), 'knowledge_chunks', ['project_id'], unique=False)
    op.create_index(
        'ix_knowledge_chunks_search', 'knowledge_chunks', ['search'], unique=False, postgresql_using='gin'
    )
    for plan, max_bytes in MAX_FILE_BYTES.items():
        op.execute(
            sa.text(
                "UPDATE plans SET limits = limits || jsonb_build_object('maxFileBytes', CAST(:bytes AS bigint))"
                " WHERE code = :plan"
            ).bindparams(bytes=max_bytes, plan=plan)
        )


def downgrade() -> None:
    op.execute("UPDATE plans SET limits = limits - 'maxFileBytes'")
    op.drop_index('ix_knowledge_chunks_search', table_name='knowledge_chunks', postgresql_using='gin')
    op.drop_index(op.f('ix_knowledge_chunks_project_id'), table_name='knowledge_chunks')
    op.drop_table('knowledge_chunks')
    op.drop_index(op.f('ix_file_processings_file_id'), table_name='file_processings')
    op.drop_table('file_processings')
    op.drop_index(op.f('ix_files_project_id'), table_name='files')
    op.drop_table('files')
