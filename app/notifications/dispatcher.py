"""The notification dispatcher: domain events in the outbox become notifications, in the worker.

Each batch is one transaction, like the outbox relay (``app/worker/relay.py``): lock the oldest
events not notified yet (``FOR UPDATE SKIP LOCKED``, so two workers take disjoint batches),
turn each handled type into drafts (``handlers.HANDLERS``) and deliver them
(``service.deliver``: notifications, queued emails and their send jobs, ``notification.sent``),
set ``notified_at`` on every locked row (every type passes through; one nobody is told about is
just marked), commit.

Exactly once: the notifications, the emails, their jobs and ``notified_at`` commit together. A
worker killed before the commit leaves the events unnotified and nothing delivered: the next
batch does it all. Should an event be handled again anyway (an operator replays it by setting
``notified_at`` back to ``NULL``), the unique source keys of ``deliver`` make that harmless.

A failing handler (an unexpected payload, a template an administrator broke) does not hold the
others up: each event is delivered inside its own savepoint. One that raises is rolled back to
it and left unnotified for a later batch, at most ``MAX_ATTEMPTS`` times in this process; then
it is marked notified anyway, with an ERROR log naming the event, so it cannot block the queue
nor be retried for ever. After a fix, it can be replayed
(``UPDATE outbox_events SET notified_at = NULL WHERE event_id = ...``).
"""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import commit
from app.models import OutboxEvent
from app.notifications.handlers import HANDLERS, Event, Links
from app.notifications.service import deliver

logger = logging.getLogger("bazaar.notifications")

# Batches an event may fail in before it is marked notified without its notifications.
MAX_ATTEMPTS = 3


@dataclass
class Dispatcher:
    sessions: async_sessionmaker[AsyncSession]
    links: Links
    batch_size: int
    max_attempts: int = MAX_ATTEMPTS
    # Failed attempts per event, in this process (a restart gives an event its tries again).
    failures: dict[UUID, int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, sessions: async_sessionmaker[AsyncSession], settings: Settings) -> "Dispatcher":
        return cls(sessions, Links(settings.public_base_url), settings.notify_batch_size)

    async def dispatch_batch(self) -> int:
        """Notify up to ``batch_size`` of the oldest unnotified events; return how many were locked."""
        async with self.sessions() as db:
            rows = (
                await db.execute(
                    select(
                        OutboxEvent.event_id, OutboxEvent.type, OutboxEvent.subject_id, OutboxEvent.payload
                    )
                    .where(OutboxEvent.notified_at.is_(None))
                    .order_by(OutboxEvent.event_id)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            done: list[UUID] = []
            for row in rows:
                event = Event(row.event_id, row.type, row.subject_id, row.payload)
                if await self._notify(db, event):
                    done.append(event.event_id)
            if done:
                await db.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.event_id.in_(done))
                    .values(notified_at=datetime.now(UTC))
                    .execution_options(synchronize_session=False)
                )
            await commit(db)
        for event_id in done:
            self.failures.pop(event_id, None)
        return len(rows)

    async def _notify(self, db: AsyncSession, event: Event) -> bool:
        """Deliver ``event``'s notifications in a savepoint; whether it is done (to be marked)."""
        handler = HANDLERS.get(event.type)
        if handler is None:
            return True
        callbacks: list[object] = db.info.setdefault("after_commit", [])
        registered = len(callbacks)
        try:
            async with db.begin_nested():
                drafts = await handler(db, event, self.links)
                await deliver(db, drafts)
        except Exception:
            # Rolled back to the savepoint; what it asked to run after the commit goes with it.
            del callbacks[registered:]
            attempts = self.failures.get(event.event_id, 0) + 1
            self.failures[event.event_id] = attempts
            extra = {"eventId": str(event.event_id), "eventType": event.type, "attempts": attempts}
            if attempts < self.max_attempts:
                logger.warning("notifying an event failed; it is tried again", exc_info=True, extra=extra)
                return False
            logger.error(
                "notifying an event failed for good; it is marked notified", exc_info=True, extra=extra
            )
        return True

    async def run(self, stop: asyncio.Event, poll_seconds: float) -> None:
        """Dispatch until ``stop`` is set; a batch under way is finished first."""
        logger.info("notification dispatcher starting")
        while not stop.is_set():
            try:
                locked = await self.dispatch_batch()
            except Exception:
                # Postgres restarting must not kill the worker: the events stay unnotified and the
                # next attempt picks them up.
                logger.exception("notification batch failed; retrying")
                locked = 0
            if locked < self.batch_size:
                await _wait(stop, poll_seconds)
        logger.info("notification dispatcher stopped")


async def run_dispatcher(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, stop: asyncio.Event
) -> None:
    await Dispatcher.from_settings(sessions, settings).run(stop, settings.notify_poll_seconds)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
