from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from app.auth.tasks import purge_ended_sessions
from app.core.db import sessionmaker
from app.models import AuthSession
from tests.factories import create_user, login


async def test_purge_removes_long_ended_sessions_and_keeps_live_and_recent_ones(client):
    user = await create_user("end_user")
    sessions = [(await login(client, user.email))["user"]["sessionId"] for _ in range(4)]
    old = datetime.now(UTC) - timedelta(days=40)
    recent = datetime.now(UTC) - timedelta(days=2)
    async with sessionmaker()() as db:
        await db.execute(update(AuthSession).where(AuthSession.id == sessions[0]).values(expires_at=old))
        await db.execute(update(AuthSession).where(AuthSession.id == sessions[1]).values(revoked_at=old))
        await db.execute(update(AuthSession).where(AuthSession.id == sessions[2]).values(revoked_at=recent))
        await db.commit()

    purged = await purge_ended_sessions(timestamp=int(datetime.now(UTC).timestamp()))

    assert purged == 2
    async with sessionmaker()() as db:
        left = {str(i) for i in (await db.execute(select(AuthSession.id))).scalars()}
    assert left == {sessions[2], sessions[3]}


def test_purge_is_registered_as_a_periodic_job():
    from app.worker.queue import queue

    queue.perform_import_paths()
    assert "auth.purge_ended_sessions" in queue.tasks
    periodic = [p.task.name for p in queue.periodic_registry.periodic_tasks.values()]
    assert "auth.purge_ended_sessions" in periodic
