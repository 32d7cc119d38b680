"""The embedded Postgres of ``make run``: ``pgserver`` with its data under ``var/pgdata``."""

import logging
from pathlib import Path

logger = logging.getLogger("bazaar.embedded")

DATABASE = "bazaar"


def start_embedded_postgres(var_dir: Path) -> str:
    """Start (or reuse) the embedded server and return a URL to the ``bazaar`` database.

    The server keeps running while this process lives and stops when it exits; the data stays.
    """
    from pgserver import get_server  # type: ignore[attr-defined]  # only the embedded default loads it

    pgdata = (var_dir / "pgdata").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
    if "1 row" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE};")
        logger.info("created embedded database", extra={"pgdata": str(pgdata)})
    # A Unix socket in pgdata: nothing listens on TCP, nothing to collide with.
    return f"postgresql://postgres@/{DATABASE}?host={pgdata}"
