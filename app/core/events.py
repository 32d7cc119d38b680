"""Domain events through the transactional outbox.

``record_event`` adds the event to the caller's session, so it commits or rolls back with the
change it describes: a rolled-back request leaves no event. The catalogue of types and their
payloads is ``docs/events.md``.
"""

from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import after_commit
from app.core.ids import uuid7
from app.models import OutboxEvent

CommitHook = Callable[[list[OutboxEvent]], Awaitable[None]]
_commit_hooks: dict[str, list[CommitHook]] = {}


def on_commit_of(types: Iterable[str], hook: CommitHook) -> None:
    """Call ``hook`` with the events of ``types`` a transaction recorded, once it has committed
    (another domain reacting to a change at once, e.g. a cache to drop). Not for delivery that
    must not be lost: a process killed after the commit skips the hook; the outbox is that."""
    for type in types:
        _commit_hooks.setdefault(type, []).append(hook)


def _note_for_hooks(db: AsyncSession, event: OutboxEvent) -> None:
    hooks = _commit_hooks.get(event.type)
    if not hooks:
        return
    transaction = db.sync_session.get_transaction()
    noted = db.info.get("commit_hook_events")
    if noted is None or noted[0] is not transaction:
        pending: dict[CommitHook, list[OutboxEvent]] = {}
        db.info["commit_hook_events"] = (transaction, pending)

        async def run_hooks() -> None:
            for hook, events in pending.items():
                await hook(events)

        after_commit(db, run_hooks)
    else:
        pending = noted[1]
    for hook in hooks:
        pending.setdefault(hook, []).append(event)


def _transaction_time(db: AsyncSession) -> datetime:
    """One clock reading per transaction: events committed together (a refund and its ledger
    posting) carry the same ``occurred_at``, so no report puts them on different days."""
    transaction = db.sync_session.get_transaction()
    now = datetime.now(UTC)
    if transaction is None:
        return now
    stamped = db.info.get("event_time")
    if stamped is not None and stamped[0] is transaction:
        return stamped[1]  # type: ignore[no-any-return]
    db.info["event_time"] = (transaction, now)
    return now


async def record_event(
    db: AsyncSession,
    type: str,
    *,
    actor_id: UUID | None,
    subject_id: UUID | str | None,
    payload: dict[str, Any] | None = None,
    schema_version: int = 1,
) -> OutboxEvent:
    event = OutboxEvent(
        event_id=uuid7(),
        type=type,
        schema_version=schema_version,
        occurred_at=_transaction_time(db),
        actor_id=actor_id,
        subject_id=str(subject_id) if subject_id is not None else None,
        payload=payload or {},
    )
    db.add(event)
    _note_for_hooks(db, event)
    return event
