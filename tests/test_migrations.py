"""Migrations go down and up again cleanly, and the models match the migrated schema."""

import psycopg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from app.core.db import async_url
from app.core.migrate import alembic_config, upgrade_database
from app.models import Base


def _fresh_database(database_url: str, name: str) -> str:
    admin = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url.rsplit("/", 1)[0] + f"/{name}"


def _drop(database_url: str) -> None:
    admin, name = database_url.rsplit("/", 1)
    with psycopg.connect(admin + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_downgrade_to_base_and_upgrade_again(database_url):
    url = _fresh_database(database_url, database_url.rsplit("/", 1)[1] + "_mig")
    try:
        upgrade_database(url)
        command.downgrade(alembic_config(url), "base")
        with psycopg.connect(url) as conn:
            left = conn.execute(
                "SELECT count(*) FROM pg_tables"
                " WHERE schemaname = 'public' AND tablename != 'alembic_version'"
            ).fetchone()
        assert left == (0,)
        upgrade_database(url)
    finally:
        _drop(url)


def test_models_and_migrations_agree(database_url):
    engine = create_engine(async_url(database_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    ours = [d for d in diff if "procrastinate" not in str(d)]
    assert ours == []
