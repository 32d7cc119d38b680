from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError

from app.core.config import Settings
from app.core.usage import UsageBeacon, publish_usage
from tests.landing.conftest import make_beacon


@pytest.mark.parametrize(
    "changes",
    [
        {"event_id": "short"},
        {"event_id": "has spaces in it"},
        {"event_id": "x" * 65},
        {"kind": "click"},
        {"count": -1},
        {"count": 1_000_001},
        {"latency_ms": -5},
        {"client_ts": datetime(2026, 3, 1, 12, 0)},
        {"widget_id": ""},
        {"widget_id": "widget-1"},
        {"project_id": "not-a-uuid"},
        {"end_user_id": "0b0e6f5e-6a1c-4c55-9d1e"},
        {"unexpected": 1},
    ],
)
def test_a_beacon_that_breaks_the_schema_is_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        make_beacon(**changes)


def test_client_timestamps_in_another_zone_are_kept_as_the_same_instant_in_utc() -> None:
    paris = timezone(timedelta(hours=1))

    beacon = make_beacon(client_ts=datetime(2026, 3, 1, 13, 0, tzinfo=paris))

    assert beacon.client_ts == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert beacon.client_ts.tzinfo == UTC


async def test_a_batch_is_one_entry_per_beacon_in_the_stream_stamped_with_the_servers_clock(
    landing_settings: Settings, stream_redis: aioredis.Redis
) -> None:
    beacons = [make_beacon(), make_beacon(), make_beacon(kind="tokens", count=300)]
    accepted_at = datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=UTC)

    accepted = await publish_usage(
        beacons, settings=landing_settings, redis=stream_redis, received_at=accepted_at
    )

    assert accepted == 3
    stream = landing_settings.redis_prefix + landing_settings.usage_stream
    entries = await stream_redis.xrange(stream)
    bodies = [orjson.loads(fields[b"b"]) for _, fields in entries]
    assert [body["event_id"] for body in bodies] == [b.event_id for b in beacons]
    assert {body["received_at"] for body in bodies} == {"2026-03-01T12:00:00.000005Z"}
    assert UsageBeacon.model_validate(bodies[2]).count == 300


async def test_without_redis_or_a_session_nothing_is_silently_dropped(landing_settings: Settings) -> None:
    with pytest.raises(RuntimeError):
        await publish_usage([make_beacon()], settings=landing_settings, redis=None, db=None)
