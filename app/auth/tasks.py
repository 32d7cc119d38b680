"""Periodic housekeeping of sessions."""

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_

from app.core.db import sessionmaker
from app.models import AuthSession
from app.worker.queue import queue

logger = logging.getLogger("bazaar.auth.tasks")

# Ended sessions are kept a while for the audit trail of logins, then purged.
KEEP_ENDED_SESSIONS = timedelta(days=30)


@queue.periodic(cron="17 * * * *")
@queue.task(name="auth.purge_ended_sessions", queue="maintenance")
async def purge_ended_sessions(timestamp: int) -> int:
    cutoff = datetime.now(UTC) - KEEP_ENDED_SESSIONS
    async with sessionmaker()() as db:
        result = await db.execute(
            delete(AuthSession).where(or_(AuthSession.expires_at < cutoff, AuthSession.revoked_at < cutoff))
        )
        await db.commit()
    purged = int(getattr(result, "rowcount", 0) or 0)
    logger.info("purged ended sessions", extra={"count": purged})
    return purged
