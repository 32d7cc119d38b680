"""Domain events through the transactional outbox.

``record_event`` adds the event to the caller's session, so it commits or rolls back with the
change it describes: a rolled-back request leaves no event. The catalogue of types and their
payloads is ``docs/events.md``.
"""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.ids import uuid7
from app.models import OutboxEvent


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
        occurred_at=datetime.now(UTC),
        actor_id=actor_id,
        subject_id=str(subject_id) if subject_id is not None else None,
        payload=payload or {},
    )
    db.add(event)
    return event
