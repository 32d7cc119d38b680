"""Widget usage beacons: their schema and how an accepted batch is handed to the data platform.

A beacon is one thing a widget saw happen (an impression, an open, a message, the tokens of a
message). They are high volume, so with Redis they bypass Postgres: ``publish_usage`` appends
them to the Redis Stream ``<REDIS_PREFIX><USAGE_STREAM>`` and the worker's stream consumer lands
them as Parquet (``docs/data-platform.md``, "Landing"). In embedded mode (no Redis) they are
outbox rows of type ``usage.beacon`` in the caller's transaction and the outbox relay lands them.

The Redis client is a parameter of ``publish_usage`` rather than something read from the
runtime: core owns no long-lived Redis connection of its own (the cache's is private to it), and
the caller, the widget domain, decides which client (and which pool) beacons travel on.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal
from uuid import UUID

import redis.asyncio as aioredis
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.core.config import Settings

if TYPE_CHECKING:
    # Only the embedded path needs the ORM: the stream consumer imports this module and
    # restarts faster without loading SQLAlchemy and every model.
    from sqlalchemy.ext.asyncio import AsyncSession

USAGE_EVENT_TYPE = "usage.beacon"
# The stream entry's only field: the beacon as JSON (snake_case keys, the model's field names).
STREAM_FIELD = "b"

UsageKind = Literal["impression", "open", "message", "tokens"]
USAGE_KINDS: tuple[UsageKind, ...] = ("impression", "open", "message", "tokens")


def _as_utc(value: datetime) -> datetime:
    # A naive timestamp would be read in whatever zone the reader assumes: refuse it rather
    # than guess. Aware ones are normalised so every landed value is UTC.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a time zone")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=64)]


def _canonical_uuid(value: str) -> str:
    # Widgets, projects and end users are rows with UUID keys: an id that is not one can only be
    # a bug or a forgery, and would otherwise reach the marts and every report built on them.
    return str(UUID(value))


UuidText = Annotated[str, StringConstraints(max_length=64), AfterValidator(_canonical_uuid)]


def _now() -> datetime:
    return datetime.now(UTC)


class UsageBeacon(BaseModel):
    """One usage beacon: the columns of ``landing/usage`` except ``landed_at``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")] = Field(
        description="Client-generated id, the deduplication key (a retried beacon keeps it)."
    )
    widget_id: UuidText
    project_id: UuidText
    end_user_id: UuidText = Field(description="The widget's owner: the end user who bought the project.")
    visitor_id: Identifier = Field(description="Anonymous visitor id the widget keeps in the browser.")
    session_id: Identifier | None = None
    customer_id: Identifier | None = Field(
        None, description="The host site's signed-in user, when identity verification is on."
    )
    kind: UsageKind
    count: int = Field(1, ge=0, le=1_000_000, description="Events of `kind`, or tokens for `tokens`.")
    latency_ms: int | None = Field(None, ge=0, le=2_147_483_647, description="Time to first token.")
    client_ts: UtcDatetime | None = Field(None, description="The browser's clock; never trusted for time.")
    received_at: UtcDatetime = Field(
        default_factory=_now, description="The server's clock when accepted (stamped by `publish_usage`)."
    )


async def publish_usage(
    beacons: Sequence[UsageBeacon],
    *,
    settings: Settings,
    redis: aioredis.Redis | None,
    db: "AsyncSession | None" = None,
    received_at: datetime | None = None,
) -> int:
    """Accept a batch of beacons; return how many were accepted.

    ``received_at`` (default: now) replaces whatever the beacons carried: the server's clock is
    the event time in marts, a client's is only informative. With ``redis`` the whole batch is
    one pipelined round trip of ``XADD``s, so once this returns the beacons are in Redis (and
    as durable as its AOF settings make them). Without it, ``db`` is required: the beacons
    become outbox rows that commit (or roll back) with the caller's transaction.
    """
    if not beacons:
        return 0
    stamp = _as_utc(received_at) if received_at is not None else _now()
    stamped = [beacon.model_copy(update={"received_at": stamp}) for beacon in beacons]
    if redis is not None:
        stream = settings.redis_prefix + settings.usage_stream
        async with redis.pipeline(transaction=False) as pipe:
            for beacon in stamped:
                pipe.xadd(stream, {STREAM_FIELD: beacon.model_dump_json()})
            await pipe.execute()
        return len(stamped)
    if db is None:
        raise RuntimeError("publish_usage needs a Redis client or a database session")
    from app.core.events import record_event

    for beacon in stamped:
        await record_event(
            db,
            "usage.beacon",  # = USAGE_EVENT_TYPE, spelled out for docs/events.md's catalogue test
            actor_id=None,
            subject_id=beacon.widget_id,
            payload=beacon.model_dump(mode="json"),
        )
    return len(stamped)
