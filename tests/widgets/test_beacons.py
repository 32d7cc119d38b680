"""Usage beacons: validated, authorised by the visitor's session, rate limited, and in the Redis
stream (or the outbox without Redis) before the 202."""

from typing import Any
from uuid import uuid4

import httpx
import orjson
import pytest
import redis

from app.core.config import Settings
from tests.factories import events_of
from tests.widgets.steps import SITE, bought_project, generate, open_session, visitor_headers


def beacon(kind: str = "impression", **fields: Any) -> dict[str, Any]:
    return {"eventId": str(uuid4()), "kind": kind, "occurredAt": "2026-11-26T10:00:00.000Z", **fields}


async def _widget_and_session(client: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)
    return widget, await open_session(client, widget, visitorId="visitor-one")


def stream_entries(settings: Settings) -> list[dict[str, Any]]:
    assert settings.redis_url is not None
    r = redis.Redis.from_url(settings.redis_url)
    try:
        entries = r.xrange(settings.redis_prefix + settings.usage_stream)
    finally:
        r.close()
    return [orjson.loads(fields[b"b"]) for _, fields in entries]


async def test_sendbeacon_text_plain_batches_land_in_the_redis_stream(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    widget, session = await _widget_and_session(client)
    events = [beacon("impression"), beacon("open"), beacon("tokens", count=180, latencyMs=420)]

    response = await client.post(
        f"/api/widgets/{widget['id']}/track-usage",
        content=orjson.dumps({"token": session["token"], "events": events}),
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": SITE},
    )

    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 3}
    assert response.headers["access-control-allow-origin"] == SITE
    landed = stream_entries(settings)
    assert [(b["event_id"], b["kind"], b["count"]) for b in landed] == [
        (e["eventId"], e["kind"], e.get("count", 1)) for e in events
    ]
    first = landed[0]
    assert (first["widget_id"], first["end_user_id"], first["visitor_id"]) == (
        widget["id"],
        widget["userId"],
        "visitor-one",
    )
    assert first["project_id"] == widget["projectId"]
    assert first["client_ts"].startswith("2026-11-26T10:00:00")
    assert first["received_at"]
    assert first["session_id"]


async def test_a_replayed_batch_is_accepted_again_for_the_warehouse_to_deduplicate(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    widget, session = await _widget_and_session(client)
    body = {"token": session["token"], "events": [beacon("open")]}
    path = f"/api/widgets/{widget['id']}/track-usage"

    first = await client.post(path, json=body, headers={"Origin": SITE})
    replay = await client.post(path, json=body, headers={"Origin": SITE})

    assert (first.status_code, replay.status_code) == (202, 202)
    ids = [b["event_id"] for b in stream_entries(settings)]
    assert ids == [body["events"][0]["eventId"]] * 2


@pytest.mark.parametrize("settings_changes", [{"redis_url": None}])
async def test_without_redis_beacons_are_outbox_rows(client: httpx.AsyncClient) -> None:
    widget, session = await _widget_and_session(client)

    response = await client.post(
        f"/api/widgets/{widget['id']}/track-usage",
        json={"events": [beacon("message")]},
        headers=visitor_headers(session),
    )

    assert response.status_code == 202, response.text
    [row] = await events_of("usage.beacon")
    assert row["payload"]["widget_id"] == widget["id"]
    assert row["payload"]["kind"] == "message"


async def test_bad_beacon_requests_are_refused_and_nothing_is_published(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    widget, session = await _widget_and_session(client)
    other_widget, other_session = await _widget_and_session(client)
    path = f"/api/widgets/{widget['id']}/track-usage"
    token = session["token"]
    cases: list[tuple[str, Any, dict[str, str], int, str]] = [
        ("bad json", b"{not json", {"Origin": SITE}, 400, "malformed_json"),
        ("not an object", b"[1]", {"Origin": SITE}, 422, "validation_error"),
        (
            "huge batch",
            {"token": token, "events": [beacon() for _ in range(101)]},
            {"Origin": SITE},
            413,
            "too_many_events",
        ),
        ("no events", {"token": token, "events": []}, {"Origin": SITE}, 422, "validation_error"),
        (
            "unknown kind",
            {"token": token, "events": [beacon("click")]},
            {"Origin": SITE},
            422,
            "validation_error",
        ),
        (
            # One impression, open or message is one event: only token counts are amounts.
            "inflated message count",
            {"token": token, "events": [beacon("message", count=1000)]},
            {"Origin": SITE},
            422,
            "validation_error",
        ),
        (
            "naive time",
            {"token": token, "events": [beacon(occurredAt="2026-11-26T10:00:00")]},
            {"Origin": SITE},
            422,
            "validation_error",
        ),
        ("no token", {"events": [beacon()]}, {"Origin": SITE}, 401, "session_required"),
        (
            "other widget's token",
            {"token": other_session["token"], "events": [beacon()]},
            {"Origin": SITE},
            403,
            "session_for_another_widget",
        ),
        (
            "wrong origin",
            {"token": token, "events": [beacon()]},
            {"Origin": "https://evil.example"},
            403,
            "origin_not_allowed",
        ),
        ("no origin", {"token": token, "events": [beacon()]}, {}, 403, "origin_required"),
    ]
    for name, body, headers, status, code in cases:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        response = await client.post(path, content=content, headers={"Content-Type": "text/plain", **headers})
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), name
    unknown = await client.post(
        f"/api/widgets/{uuid4()}/track-usage",
        json={"token": token, "events": [beacon()]},
        headers={"Origin": SITE},
    )
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "widget_not_found")
    assert stream_entries(settings) == []
    assert other_widget["id"] != widget["id"]


async def test_a_visitor_flooding_beacons_is_rate_limited(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    widget = await generate(
        client, shop.buyer, shop.project, behaviour={"rateLimits": {"beaconsPerMinutePerVisitor": 2}}
    )
    session = await open_session(client, widget)
    path = f"/api/widgets/{widget['id']}/track-usage"

    statuses = [
        (
            await client.post(
                path, json={"token": session["token"], "events": [beacon()]}, headers={"Origin": SITE}
            )
        ).status_code
        for _ in range(3)
    ]

    assert statuses == [202, 202, 429]
