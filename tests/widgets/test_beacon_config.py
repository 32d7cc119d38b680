"""The beacon route reads a widget's origins and limits from a cache, not the database: a change
of configuration must still reach it at once (the cache is invalidated when the change commits,
in every process), and one whose invalidation was missed within ``RUNTIME_CONFIG_TTL_SECONDS``.
Rate limits and the stream are one Redis round trip: a refused batch is not published."""

import time
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import redis
from sqlalchemy import update

from app.core import cache as cache_module
from app.core.cache import build_cache
from app.core.config import Settings
from app.core.db import sessionmaker
from app.models import Widget
from app.widgets.service import RUNTIME_CONFIG_TTL_SECONDS, runtime_config_key
from tests.widgets.steps import SITE, bought_project, generate, open_session
from tests.widgets.test_beacons import beacon, stream_entries

OTHER_SITE = "https://blog.example.org"


async def _send(client: httpx.AsyncClient, widget: dict[str, Any], token: str, origin: str) -> httpx.Response:
    return await client.post(
        f"/api/widgets/{widget['id']}/track-usage",
        json={"token": token, "events": [beacon()]},
        headers={"Origin": origin},
    )


async def _widget_with_sessions(client: httpx.AsyncClient) -> tuple[Any, dict[str, Any], str, str]:
    """A widget allowed on both sites, a session on each, one beacon sent (its config cached)."""
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project, allowedOrigins=[SITE, OTHER_SITE])
    on_site = (await open_session(client, widget))["token"]
    on_other = (await open_session(client, widget, origin=OTHER_SITE))["token"]
    assert (await _send(client, widget, on_site, SITE)).status_code == 202
    return shop, widget, on_site, on_other


async def _set_origins_behind_the_cache(widget_id: str, origins: list[str]) -> None:
    """What another process's change looks like from here: the row changes, nothing here is told."""
    async with sessionmaker()() as db:
        row = await db.get(Widget, UUID(widget_id))
        assert row is not None
        behaviour = {**row.behaviour, "allowedOrigins": origins}
        await db.execute(update(Widget).where(Widget.id == row.id).values(behaviour=behaviour))
        await db.commit()


@pytest.mark.parametrize("settings_changes", [{}, {"redis_url": None}], ids=["redis", "embedded"])
async def test_an_origin_removed_from_the_config_is_refused_at_once(client: httpx.AsyncClient) -> None:
    shop, widget, on_site, on_other = await _widget_with_sessions(client)

    response = await client.put(
        f"/api/widgets/{widget['id']}/config",
        json={"behaviour": {"allowedOrigins": [OTHER_SITE]}},
        headers=shop.buyer.headers,
    )
    assert response.status_code == 200, response.text

    refused = await _send(client, widget, on_site, SITE)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "origin_not_allowed")
    assert (await _send(client, widget, on_other, OTHER_SITE)).status_code == 202


async def test_a_change_committed_by_another_process_reaches_this_one_at_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    _, widget, on_site, _ = await _widget_with_sessions(client)
    other_process = build_cache(settings)
    await other_process.start()
    try:
        await _set_origins_behind_the_cache(widget["id"], [OTHER_SITE])
        # What update_config does after its commit, from another process's cache.
        await other_process.invalidate(runtime_config_key(UUID(widget["id"])))
    finally:
        await other_process.close()

    refused = await _send(client, widget, on_site, SITE)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "origin_not_allowed")


async def test_a_missed_invalidation_lasts_no_longer_than_the_cache_ttl(
    client: httpx.AsyncClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, widget, on_site, _ = await _widget_with_sessions(client)
    await _set_origins_behind_the_cache(widget["id"], [OTHER_SITE])

    # Within the bound the cached configuration still serves...
    assert (await _send(client, widget, on_site, SITE)).status_code == 202
    assert settings.redis_url is not None
    shared = redis.Redis.from_url(settings.redis_url)
    key = settings.redis_prefix + "cache:" + runtime_config_key(UUID(widget["id"]))
    try:
        assert 0 < shared.ttl(key) <= RUNTIME_CONFIG_TTL_SECONDS
        # ... and past it neither level has it: Redis has expired its copy (its TTL, checked
        # above), and this process's clock is past the first level's expiry.
        shared.delete(key)
    finally:
        shared.close()
    later = time.monotonic() + RUNTIME_CONFIG_TTL_SECONDS + 1
    monkeypatch.setattr(cache_module, "time", SimpleNamespace(monotonic=lambda: later))

    refused = await _send(client, widget, on_site, SITE)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "origin_not_allowed")


async def test_a_rate_limit_change_applies_at_once(client: httpx.AsyncClient, settings: Settings) -> None:
    shop, widget, on_site, _ = await _widget_with_sessions(client)

    await client.put(
        f"/api/widgets/{widget['id']}/config",
        json={"behaviour": {"rateLimits": {"beaconsPerMinutePerVisitor": 1}}},
        headers=shop.buyer.headers,
    )
    statuses = [(await _send(client, widget, on_site, SITE)).status_code for _ in range(2)]

    assert statuses == [202, 429]  # a fresh window of 1 for the new limit, then refused
    assert len(stream_entries(settings)) == 2  # the first beacon, then the one accepted here


@pytest.mark.parametrize("settings_changes", [{"widget_beacon_rate_limit": "2/minute"}])
async def test_a_widget_over_its_limit_is_refused_for_every_visitor_and_nothing_is_published(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)
    tokens = [(await open_session(client, widget, visitorId=f"visitor-{i}"))["token"] for i in range(3)]

    answers = [await _send(client, widget, token, SITE) for token in tokens]

    assert [a.status_code for a in answers] == [202, 202, 429]
    refused = answers[2]
    assert refused.json()["error"]["message"] == "This widget is sending too much usage data; retry later"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["access-control-allow-origin"] == SITE
    assert len(stream_entries(settings)) == 2


async def test_a_visitor_over_the_limit_publishes_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    shop = await bought_project(client)
    widget = await generate(
        client, shop.buyer, shop.project, behaviour={"rateLimits": {"beaconsPerMinutePerVisitor": 1}}
    )
    token = (await open_session(client, widget))["token"]
    other = (await open_session(client, widget, visitorId="visitor-two"))["token"]

    answers = [await _send(client, widget, t, SITE) for t in (token, token, other)]

    assert [a.status_code for a in answers] == [202, 429, 202]  # per visitor
    assert answers[1].json()["error"]["message"] == "Too many usage reports; retry later"
    assert len(stream_entries(settings)) == 2


async def test_every_form_the_model_accepts_is_accepted_and_stored_alike(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """The fast reading of a batch leaves whatever is not in ``embed.js``'s form to the model:
    same answers, same stream entries."""
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)
    token = (await open_session(client, widget))["token"]
    ids = [uuid4().hex for _ in range(4)]
    events = [
        {"eventId": ids[0], "kind": "open", "occurredAt": "2026-11-26T10:00:00.250Z"},
        {"event_id": ids[1], "kind": "message", "occurred_at": "2026-11-26T12:00:00+02:00"},
        {"eventId": f"  {ids[2]} ", "kind": "tokens", "count": 42, "occurredAt": "2026-11-26 10:00:00Z"},
        {"eventId": ids[3], "kind": "impression", "latencyMs": 7, "occurredAt": "2026-11-26T10:00:00Z"},
    ]

    response = await client.post(
        f"/api/widgets/{widget['id']}/track-usage",
        json={"token": f" {token}", "events": events},
        headers={"Origin": SITE},
    )

    assert response.status_code == 202, response.text
    landed = {b["event_id"]: b for b in stream_entries(settings)}
    assert [landed[i]["client_ts"] for i in ids] == [
        "2026-11-26T10:00:00.250000Z",
        "2026-11-26T10:00:00Z",
        "2026-11-26T10:00:00Z",
        "2026-11-26T10:00:00Z",
    ]
    assert [(landed[i]["kind"], landed[i]["count"], landed[i]["latency_ms"]) for i in ids] == [
        ("open", 1, None),
        ("message", 1, None),
        ("tokens", 42, None),
        ("impression", 1, 7),
    ]
