"""The outbox relay: unrelayed ``outbox_events`` rows become landing Parquet, then ``relayed_at``.

Each batch is one transaction: lock the oldest unrelayed rows (``FOR UPDATE SKIP LOCKED``, so
two workers relay disjoint batches instead of queueing behind each other), land them, set
``relayed_at``, commit. A crash after the file is durable and before the commit leaves the rows
unrelayed: they land again in a later file (duplicates, which dbt removes on ``event_id``),
never lost. Rows of type ``usage.beacon`` (embedded mode's beacons) go to ``landing/usage``
under the beacon's own ``event_id``; every other type goes to ``landing/events``.
"""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from pydantic import ValidationError
from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.usage import USAGE_EVENT_TYPE, UsageBeacon
from app.core.warehouse_layout import WarehouseLayout
from app.models import OutboxEvent
from app.worker.landing import land_frame, land_rows, sweep_stale_temporaries, usage_frame, write_rejected

logger = logging.getLogger("bazaar.relay")

_COLUMNS = (
    OutboxEvent.event_id,
    OutboxEvent.type,
    OutboxEvent.schema_version,
    OutboxEvent.occurred_at,
    OutboxEvent.actor_id,
    OutboxEvent.subject_id,
    OutboxEvent.payload,
)


@dataclass
class _Batch:
    events: list[dict[str, Any]] = field(default_factory=list)
    usage: list[UsageBeacon] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def _split(rows: Sequence[Row[Any]]) -> _Batch:
    batch = _Batch()
    for row in rows:
        if row.type == USAGE_EVENT_TYPE:
            try:
                batch.usage.append(UsageBeacon.model_validate(row.payload))
            except ValidationError as exc:
                batch.rejected.append(
                    {"outbox_event_id": str(row.event_id), "payload": row.payload, "error": str(exc)}
                )
            continue
        batch.events.append(
            {
                "event_id": str(row.event_id),
                "type": row.type,
                "schema_version": row.schema_version,
                "occurred_at": row.occurred_at,
                "actor_id": str(row.actor_id) if row.actor_id is not None else None,
                "subject_id": row.subject_id,
                "payload": orjson.dumps(row.payload).decode(),
            }
        )
    return batch


def _land(layout: WarehouseLayout, batch: _Batch, landed_at: datetime) -> None:
    land_rows(layout, "events", batch.events, landed_at)
    if batch.usage:
        land_frame(layout, "usage", usage_frame(batch.usage), landed_at)
    if batch.rejected:
        path = write_rejected(layout, "usage", batch.rejected, landed_at)
        logger.warning(
            "malformed usage beacons in the outbox", extra={"count": len(batch.rejected), "path": str(path)}
        )


async def _mark_relayed(db: AsyncSession, event_ids: list[UUID], landed_at: datetime) -> None:
    await db.execute(
        update(OutboxEvent)
        .where(OutboxEvent.event_id.in_(event_ids))
        .values(relayed_at=landed_at)
        .execution_options(synchronize_session=False)
    )


async def relay_batch(
    sessions: async_sessionmaker[AsyncSession], layout: WarehouseLayout, batch_size: int
) -> int:
    """Land up to ``batch_size`` of the oldest unrelayed events and mark them; return how many."""
    async with sessions() as db, db.begin():
        rows = (
            await db.execute(
                select(*_COLUMNS)
                .where(OutboxEvent.relayed_at.is_(None))
                .order_by(OutboxEvent.event_id)
                .limit(batch_size)
                .with_for_update(skip_locked=True)
            )
        ).all()
        if not rows:
            return 0
        landed_at = datetime.now(UTC)
        await asyncio.to_thread(_land, layout, _split(rows), landed_at)
        await _mark_relayed(db, [row.event_id for row in rows], landed_at)
    return len(rows)


async def run_relay(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, stop: asyncio.Event
) -> None:
    """Relay until ``stop`` is set; a batch under way is finished first."""
    layout = WarehouseLayout(settings.warehouse_dir)
    logger.info("outbox relay starting")
    # Embedded mode runs no stream consumer: the relay clears what killed writers left behind.
    await asyncio.to_thread(sweep_stale_temporaries, layout)
    while not stop.is_set():
        try:
            relayed = await relay_batch(sessions, layout, settings.landing_batch_size)
        except Exception:
            # Postgres restarting or the disk filling up must not kill the worker: the rows stay
            # unrelayed and the next attempt picks them up.
            logger.exception("outbox relay batch failed; retrying")
            relayed = 0
        if relayed < settings.landing_batch_size:
            await _wait(stop, settings.landing_flush_seconds)
    logger.info("outbox relay stopped")


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
