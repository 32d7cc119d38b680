"""The fault test of the dispatcher's exactly-once promise: the real ``bazaar worker`` is
SIGKILLed at random points while it turns hundreds of events into notifications, and restarted.
A kill before a batch's commit loses the whole batch (notifications, emails, their jobs and
``notified_at`` alike) and the next worker does it again; so every event ends up with exactly
its notifications, each emailed once with one send job."""

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, insert, select, text

from app.core.config import Settings
from app.core.db import sessionmaker
from app.core.ids import uuid7
from app.models import EmailDelivery, Notification, OutboxEvent, User, UserRole
from tests.factories import events_of

ROOT = Path(__file__).resolve().parents[2]
USERS = 400
ADMINS = 3
HEALTH_FAILURES = 20
KILLS = 4


async def arrange_events() -> int:
    """Accounts and their ``user.created`` events, and MCP health failures (each for every
    admin), recorded as the services record them; how many notifications they call for."""
    users: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for n in range(USERS + ADMINS):
        persona = "super_admin" if n < ADMINS else "end_user"
        user_id = uuid7()
        users.append(
            {
                "id": user_id,
                "email": f"fault{n}@example.com",
                "name": f"Fault {n}",
                "password_hash": "x",
                "default_persona": persona,
            }
        )
        roles.append({"user_id": user_id, "role": persona})
        events.append(
            {
                "event_id": uuid7(),
                "type": "user.created",
                "subject_id": str(user_id),
                "payload": {
                    "persona": persona,
                    "personas": [persona],
                    "plan": "free",
                    "signup": persona != "super_admin",
                },
            }
        )
    for n in range(HEALTH_FAILURES):
        events.append(
            {
                "event_id": uuid7(),
                "type": "mcp_client.health_failed",
                "subject_id": str(uuid7()),
                "payload": {
                    "name": f"Client {n}",
                    "connectionId": str(uuid7()),
                    "status": "failed",
                    "transport": None,
                    "latencyMs": 12,
                    "toolCount": 0,
                    "error": "Cannot reach the server",
                },
            }
        )
    async with sessionmaker()() as db:
        await db.execute(insert(User), users)
        await db.execute(insert(UserRole), roles)
        await db.execute(insert(OutboxEvent), events)
        await db.commit()
    return USERS + ADMINS + HEALTH_FAILURES * ADMINS


async def scalar(query: Any) -> int:
    async with sessionmaker()() as db:
        return int(await db.scalar(query) or 0)


async def unnotified() -> int:
    return await scalar(
        select(func.count()).select_from(OutboxEvent).where(OutboxEvent.notified_at.is_(None))
    )


async def notifications() -> int:
    return await scalar(select(func.count()).select_from(Notification))


async def eventually(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "app", "worker"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def test_a_worker_killed_at_random_points_notifies_each_event_exactly_once(
    client: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    seed = int(time.time())
    rng = random.Random(seed)
    expected = await arrange_events()
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.database_url or "",
        "JWT_SECRET": "test-secret-0123456789-abcdefghijklmnop",
        "ENCRYPTION_KEY": "kTq0pVYQ7c5Wm2r0bC7fJYqT3V0p0m1c3oQm2Q9wz0s=",
        "VAR_DIR": str(tmp_path / "var"),
        "WAREHOUSE_DIR": str(tmp_path / "warehouse"),
        "EMAIL_BACKEND": "log",
        "NOTIFY_BATCH_SIZE": "10",
        "NOTIFY_POLL_SECONDS": "0.1",
        "LOG_LEVEL": "ERROR",
    }
    env.pop("REDIS_URL", None)
    log = tmp_path / "worker.log"
    left_at_kill: list[int] = []
    worker = start_worker(env, log)
    try:
        for _ in range(KILLS):
            before = await notifications()

            async def made_progress(before: int = before, worker: Any = worker) -> bool:
                if worker.poll() is not None:
                    raise AssertionError(f"the worker exited:\n{log.read_text()[-3000:]}")
                return await notifications() > before

            await eventually(made_progress, timeout=60, what="the worker to notify someone")
            await asyncio.sleep(rng.uniform(0.0, 0.4))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            left_at_kill.append(await unnotified())
            worker = start_worker(env, log)

        async def all_notified() -> bool:
            return await unnotified() == 0

        await eventually(all_notified, timeout=120, what="every event to be notified")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    note = f"seed {seed}, unnotified events at each kill {left_at_kill}"
    # The kills fell while there was work left (else this proves nothing about restarts).
    assert any(left_at_kill), note
    async with sessionmaker()() as db:
        rows = (
            await db.execute(select(Notification.source_event_id, Notification.user_id, Notification.type))
        ).all()
        emails = set((await db.scalars(select(EmailDelivery.id))).all())
        jobs = Counter(
            (
                await db.scalars(
                    text(
                        "SELECT args->>'delivery_id' FROM procrastinate_jobs "
                        "WHERE task_name = 'notifications.send_email'"
                    )
                )
            ).all()
        )
    per_event_and_user = Counter((event_id, user_id) for event_id, user_id, _ in rows)
    assert len(rows) == expected, note
    assert set(per_event_and_user.values()) == {1}, note
    kinds = Counter(kind for _, _, kind in rows)
    assert kinds == {"welcome": USERS + ADMINS, "mcp_client.failing": HEALTH_FAILURES * ADMINS}, note
    assert len(emails) == expected, note
    assert set(jobs) == {str(email_id) for email_id in emails}, note
    assert set(jobs.values()) == {1}, note
    assert len(await events_of("notification.sent")) == expected, note
