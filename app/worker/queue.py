"""The job queue: procrastinate on Postgres.

Jobs live in the same database as the data, so a job can be enqueued in the transaction of
the change that caused it (later issues use that for Stripe calls, email, file processing).
Tasks are declared in each domain's ``tasks.py`` against ``queue``; ``bazaar worker`` runs them.
"""

from procrastinate import App, PsycopgConnector

from app.core.config import get_settings

# Also the modules that register payment callbacks (what a paid purchase means): the worker
# settles payments from webhooks, and app.payments may not import them itself.
# Task modules, and the services whose payment callbacks must be registered in the worker too
# (a webhook settles a purchase or an invoice there).
TASK_MODULES = [
    "app.auth.tasks",
    "app.revenue.tasks",
    "app.payments.tasks",
    "app.mcp.tasks",
    "app.files.tasks",
    "app.notifications.tasks",
    "app.notifications.broadcast",
    "app.marketplace.service",
    "app.billing.service",
]


def libpq_url(url: str) -> str:
    """procrastinate talks to psycopg directly: strip SQLAlchemy's driver suffix."""
    scheme, sep, rest = url.partition("://")
    return "postgresql" + sep + rest if scheme.startswith("postgres") else url


def _connector() -> PsycopgConnector:
    url = get_settings().database_url
    # The connector opens lazily: importing this module without a database is fine.
    return PsycopgConnector(conninfo=libpq_url(url)) if url else PsycopgConnector()


queue = App(connector=_connector(), import_paths=TASK_MODULES)
