"""A cached analytics answer is sent before the route's dependencies run (``ReportRoute``): the
same bytes as the answer that filled the cache, the same refusals, and no database work."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.db import get_engine
from tests.analytics.marts import publish, revenue_row
from tests.analytics.world import MARCH, World, build_world, d, marts
from tests.factories import Account

both_caches = pytest.mark.parametrize(
    "settings_changes", [{}, {"redis_url": None}], ids=["redis", "in_process"]
)


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    return await build_world(client)


@pytest.fixture
def published(world: World, settings: Settings) -> str:
    return publish(settings.warehouse_dir, marts(world))


@contextmanager
def database_work() -> Iterator[list[str]]:
    """Every connection taken from the pool and every session transaction begun (a request's
    session begins one when it commits, even with no query) while the block runs."""
    seen: list[str] = []

    def checkout(*_: Any) -> None:
        seen.append("connection checkout")

    def transaction(*_: Any) -> None:
        seen.append("session transaction")

    pool = get_engine().sync_engine.pool
    event.listen(pool, "checkout", checkout)
    event.listen(Session, "after_transaction_create", transaction)
    try:
        yield seen
    finally:
        event.remove(pool, "checkout", checkout)
        event.remove(Session, "after_transaction_create", transaction)


def answer_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k != "x-request-id"}


async def get(client: httpx.AsyncClient, path: str, who: Account | None) -> httpx.Response:
    return await client.get(path, headers=who.headers if who else {})


@pytest.mark.parametrize(
    ("path", "reader"),
    [
        ("/api/analytics/platform?{MARCH}", "admin"),
        ("/api/analytics/platform?{MARCH}&leaderboard=month&limit=3&granularity=week", "admin"),
        ("/api/analytics/usage?{MARCH}", "admin"),
        ("/api/analytics/usage?{MARCH}&projectId={copilot}", "ada"),
        ("/api/analytics/usage?{MARCH}&granularity=month", "shop1"),
        ("/api/analytics/revenue?{MARCH}&builderId={ada}&currency=EUR", "admin"),
        ("/api/analytics/revenue?{MARCH}", "ada"),
        ("/api/analytics/user/{ada}?{MARCH}", "ada"),
        ("/api/users/{shop1}/analytics", "shop1"),
    ],
)
async def test_a_cached_answer_is_the_same_bytes_as_the_built_one_and_takes_no_database(
    client: httpx.AsyncClient, world: World, published: str, path: str, reader: str
) -> None:
    url = path.format(MARCH=MARCH, ada=world.ada.id, shop1=world.shop1.id, copilot=world.copilot)
    who: Account = getattr(world, reader)
    await client.get("/api/auth/me", headers=who.headers)  # the session is cached, as in use

    with database_work() as building:
        built = await get(client, url, who)
    with database_work() as cached:
        again = await get(client, url, who)

    assert built.status_code == 200, built.text
    assert built.json()["warehouse"]["version"] == published
    assert again.status_code == 200
    assert again.content == built.content
    assert answer_headers(again) == answer_headers(built)
    assert building, "building the answer uses the database (names, the session's commit)"
    assert cached == []


async def test_spellings_of_the_same_query_share_one_answer_and_invalid_ones_are_still_refused(
    client: httpx.AsyncClient, world: World, published: str
) -> None:
    first = await get(client, f"/api/analytics/platform?{MARCH}&currency=eur", world.admin)
    assert first.status_code == 200

    reordered = "/api/analytics/platform?to=2026-03-31&currency=EUR&limit=10&from=2026-03-01&utm=x"
    with database_work() as work:
        same = await get(client, reordered, world.admin)
    # Not the plain spelling: the route parses these itself (the last of a repeated parameter wins).
    padded = await get(client, f"/api/analytics/platform?{MARCH}&currency=eur&limit=010", world.admin)
    repeated = await get(client, f"/api/analytics/platform?{MARCH}&currency=usd&currency=eur", world.admin)

    assert (same.content, work) == (first.content, [])
    assert padded.content == repeated.content == first.content
    for query, code in [
        ("limit=0", "validation_error"),
        ("limit=101", "validation_error"),
        ("granularity=year", "validation_error"),
        ("currency=eu", "validation_error"),
        ("leaderboard=year", "validation_error"),
        ("from=2026-02-30", "validation_error"),
        ("from=2026-03-31&to=2026-03-01", "invalid_period"),
        ("from=2024-01-01&to=2026-03-31", "period_too_long"),
    ]:
        refused = await get(client, f"/api/analytics/platform?{query}", world.admin)
        assert refused.status_code == 422, (query, refused.text[:200])
        assert refused.json()["error"]["code"] == code, query


async def test_a_caller_who_may_not_read_a_report_is_refused_though_another_callers_answer_is_cached(
    client: httpx.AsyncClient, world: World, published: str
) -> None:
    refusals: list[tuple[str, Account, list[tuple[Account | None, int, str]]]] = [
        (
            f"/api/analytics/platform?{MARCH}",
            world.admin,
            [
                (None, 401, "not_authenticated"),
                (world.ada, 403, "permission_denied"),
                (world.shop1, 403, "permission_denied"),
            ],
        ),
        (
            f"/api/analytics/revenue?{MARCH}&builderId={world.ada.id}",
            world.admin,
            [(world.grace, 404, "user_not_found"), (world.shop1, 403, "permission_denied")],
        ),
        (
            f"/api/analytics/revenue?{MARCH}&projectId={world.copilot}",
            world.ada,
            [(world.grace, 404, "project_not_found"), (world.shop1, 403, "permission_denied")],
        ),
        (
            f"/api/analytics/user/{world.ada.id}?{MARCH}",
            world.ada,
            [(world.grace, 404, "user_not_found"), (world.shop1, 404, "user_not_found")],
        ),
    ]
    for path, reader, others in refusals:
        for _ in range(2):  # built, then from the cache
            assert (await get(client, path, reader)).status_code == 200, path
        for who, status, code in others:
            refused = await get(client, path, who)
            assert (refused.status_code, refused.json()["error"]["code"]) == (status, code), (path, who)

    # Same path, another caller's scope: a builder's revenue and an end user's usage are their own.
    ada_revenue = await get(client, f"/api/analytics/revenue?{MARCH}", world.ada)
    grace_revenue = await get(client, f"/api/analytics/revenue?{MARCH}", world.grace)
    assert (ada_revenue.json()["builderId"], grace_revenue.json()["builderId"]) == (
        str(world.ada.id),
        str(world.grace.id),
    )
    platform_usage = await get(client, f"/api/analytics/usage?{MARCH}", world.admin)
    shop2_usage = await get(client, f"/api/analytics/usage?{MARCH}", world.shop2)
    assert (platform_usage.json()["scope"], shop2_usage.json()["scope"]) == ("platform", "end_user")
    assert {w["endUserId"] for w in shop2_usage.json()["widgets"]} == {str(world.shop2.id)}


@both_caches
async def test_a_logged_out_or_suspended_user_is_refused_though_their_answer_is_cached(
    client: httpx.AsyncClient, world: World, published: str
) -> None:
    own = f"/api/analytics/user/{world.ada.id}?{MARCH}"
    usage = f"/api/analytics/usage?{MARCH}"
    for who, path in ((world.ada, own), (world.shop1, usage)):
        for _ in range(2):
            assert (await get(client, path, who)).status_code == 200

    logout = await client.post("/api/auth/logout", headers=world.ada.headers)
    suspension = await client.put(
        f"/api/users/{world.shop1.id}/status",
        json={"status": "suspended", "reason": "spam"},
        headers=world.admin.headers,
    )

    assert (logout.status_code, suspension.status_code) == (204, 200)
    for who, path in ((world.ada, own), (world.shop1, usage)):
        refused = await get(client, path, who)
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "session_revoked")
    assert (await get(client, own, world.admin)).status_code == 200


async def test_a_persona_granted_changes_your_own_answer_at_once(
    client: httpx.AsyncClient, world: World, published: str
) -> None:
    own = f"/api/analytics/user/{world.ada.id}?{MARCH}"
    for _ in range(2):
        before = (await get(client, own, world.ada)).json()

    granted = await client.put(
        f"/api/users/{world.ada.id}", json={"personas": ["builder", "end_user"]}, headers=world.admin.headers
    )
    after = (await get(client, own, world.ada)).json()

    assert granted.status_code == 200, granted.text
    assert (before["personas"], before["endUser"]) == (["builder"], None)
    assert after["personas"] == ["builder", "end_user"]
    assert after["endUser"] is not None


async def test_a_new_published_version_is_not_answered_from_the_old_versions_cache(
    client: httpx.AsyncClient, world: World, published: str, settings: Settings
) -> None:
    path = f"/api/analytics/revenue?{MARCH}"
    before = await get(client, path, world.admin)
    with database_work() as work:
        assert (await get(client, path, world.admin)).content == before.content
    assert work == []

    changed = marts(world)
    changed["revenue_daily"].append(
        revenue_row(d("2026-03-20"), world.recipes, world.ada.id, sales=2, gross=1800)
    )
    second = publish(settings.warehouse_dir, changed)
    after = (await get(client, path, world.admin)).json()

    assert (before.json()["warehouse"]["version"], after["warehouse"]["version"]) == (published, second)
    totals = before.json()["totals"]
    assert (after["totals"]["sales"], after["totals"]["grossMinor"]) == (
        totals["sales"] + 2,
        totals["grossMinor"] + 1800,
    )
