"""Test fixtures: the real Postgres and Redis of the machine, a fresh schema per test run.

* Postgres: ``TEST_DATABASE_URL`` or ``postgresql://postgres@127.0.0.1:5432``; each xdist
  worker gets its own database, migrated once with Alembic. When no server answers, an
  embedded ``pgserver`` under a temporary folder stands in.
* Redis: ``TEST_REDIS_URL`` or ``redis://127.0.0.1:6379/0`` with a per-worker key prefix;
  without a server the in-process fallbacks are used.
* Every test starts with empty tables (reference data kept) and no Redis keys of its prefix.
"""

import os
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import text

from app.core import security
from app.core.config import Settings
from app.core.db import sessionmaker
from app.core.migrate import upgrade_database
from app.main import create_app

REFERENCE_TABLES = {"alembic_version", "roles", "permissions", "role_permissions", "plans"}


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _drop_stale_test_databases(conn: psycopg.Connection[Any]) -> None:
    """Databases of test runs whose process is gone (killed runs cannot clean up)."""
    names = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'bazaar_test_%'").fetchall()
    for (name,) in names:
        pid = name.rsplit("_", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    # One database per test process, so parallel runs (xdist workers, two developers) never meet.
    name = f"bazaar_test_{_worker_id()}_{os.getpid()}"
    base = os.environ.get("TEST_DATABASE_URL")
    if base is None and not _reachable("127.0.0.1", 5432):
        from app.core.embedded import start_embedded_postgres

        folder = tempfile.mkdtemp(prefix="bazaar-test-pg-")
        url = start_embedded_postgres(Path(folder))
        upgrade_database(url)
        yield url
        return
    base = base or "postgresql://postgres@127.0.0.1:5432/postgres"
    admin_url = base.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        _drop_stale_test_databases(conn)
        conn.execute(f'CREATE DATABASE "{name}"')
    url = base.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade_database(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> str | None:
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    return url if _reachable("127.0.0.1", 6379) or "TEST_REDIS_URL" in os.environ else None


@pytest.fixture(scope="session")
def redis_prefix() -> str:
    return f"bazaar-test-{_worker_id()}-{os.getpid()}:"


def build_settings(
    database_url: str, redis_url: str | None, redis_prefix: str, var_dir: Path, changes: dict[str, Any]
) -> Settings:
    """The settings every test app runs with, plus ``changes``."""
    base: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "redis_url": redis_url,
        "redis_prefix": redis_prefix,
        "jwt_secret": "test-secret-0123456789-abcdefghijklmnop",
        "var_dir": var_dir,
        "warehouse_dir": var_dir.parent / "warehouse",
        "files_dir": var_dir / "files",
        "encryption_key": "kTq0pVYQ7c5Wm2r0bC7fJYqT3V0p0m1c3oQm2Q9wz0s=",
        "log_json": True,
        "log_level": "WARNING",
        "database_pool_size": 5,
    }
    return Settings(_env_file=None, **{**base, **changes})  # type: ignore[call-arg]


@pytest.fixture
def settings_changes() -> dict[str, Any]:
    """Parametrize this to run a test's ``app``/``client`` with changed settings:
    ``@pytest.mark.parametrize("settings_changes", [{"redis_url": None}])``."""
    return {}


@pytest.fixture
def settings(
    database_url: str,
    redis_url: str | None,
    redis_prefix: str,
    tmp_path: Path,
    settings_changes: dict[str, Any],
) -> Settings:
    return build_settings(database_url, redis_url, redis_prefix, tmp_path / "var", settings_changes)


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing() -> Iterator[None]:
    """Accounts are set-up in almost every test, not the subject: cheap argon2id parameters keep
    the suite fast. The algorithm and code path are the real ones."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(security, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
        yield


def _clean_redis(url: str | None, prefix: str) -> None:
    if url is None:
        return
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    except redis.ConnectionError:
        pass  # a test that points the app at a Redis that is down on purpose
    finally:
        client.close()


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """An app started with ``settings``; afterwards every non-reference table is emptied and the
    Redis keys of the test prefix are deleted."""
    _clean_redis(settings.redis_url, settings.redis_prefix)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        try:
            yield application
        finally:
            async with sessionmaker()() as db:
                tables = (
                    await db.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
                ).scalars()
                to_clear = sorted(set(tables) - REFERENCE_TABLES)
                await db.execute(text(f"TRUNCATE {', '.join(to_clear)} RESTART IDENTITY CASCADE"))
                await db.commit()
            _clean_redis(settings.redis_url, settings.redis_prefix)


@asynccontextmanager
async def http_client(
    application: FastAPI, client_address: tuple[str, int] = ("127.0.0.1", 123)
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=application, raise_app_exceptions=False, client=client_address)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with running_app(settings) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(app) as http:
        yield http


@pytest.fixture
def make_settings(settings: Settings) -> Callable[..., Settings]:
    """The test settings with some fields changed (for a test's own app)."""

    def make(**changes: Any) -> Settings:
        return settings.model_copy(update=changes)

    return make


# --- scheduling over xdist workers ----------------------------------------------------------------
# A few tests run the real dbt project, a Dagster code location or `bazaar dev`: minutes each on
# the 2-core machine. They are handed out first so they spread over the workers instead of
# meeting at the end, and the tests sharing the session-built story warehouse stay on one worker
# (each worker would otherwise build it again). `make test` runs `--dist loadgroup`.
SLOW_FIRST = (
    "tests/pipelines/test_warehouse_build.py",
    "tests/e2e/test_make_run.py",
    "tests/e2e/test_analytics_journey.py",
    "tests/warehouse/",
    "tests/notifications/test_dispatch_kill.py",
    "tests/notifications/test_stream.py",
    "tests/marketplace/test_listing_views.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))

    def rank(item: pytest.Item) -> int:
        path = Path(str(item.path)).relative_to(root).as_posix()
        return next((i for i, prefix in enumerate(SLOW_FIRST) if path.startswith(prefix)), len(SLOW_FIRST))

    for item in items:
        if "story_warehouse" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("story_warehouse"))
    items.sort(key=rank)
