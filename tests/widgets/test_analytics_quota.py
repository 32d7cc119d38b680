"""A widget's analytics show this month's quota as it stands: read from the OLTP counter at
each request, not from the warehouse nor from the report cache."""

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.widgets.steps import (
    bought_project,
    generate,
    open_session,
    visitor_headers,
    widget_quota_of_every_plan,
)


@pytest.fixture
async def quota_of_five() -> Any:
    async with widget_quota_of_every_plan(5):
        yield


@pytest.mark.parametrize("settings_changes", [{"analytics_cache_ttl_seconds": 300}])
async def test_the_widget_report_shows_the_live_quota_of_the_month(
    client: httpx.AsyncClient, quota_of_five: None
) -> None:
    shop = await bought_project(client)
    widget = await generate(
        client, shop.buyer, shop.project, behaviour={"rateLimits": {"messagesPerMinutePerVisitor": 100}}
    )
    second = await generate(client, shop.buyer, shop.project)  # shares the owner's counter
    session = await open_session(client, widget)
    month = datetime.now(UTC).strftime("%Y-%m")

    async def send(n: int) -> None:
        for i in range(n):
            answer = await client.post(
                "/widget/v1/chat", json={"message": f"Question {i}"}, headers=visitor_headers(session)
            )
            assert answer.status_code == 200, answer.text

    async def quota(path: str, who: Any) -> dict[str, Any]:
        response = await client.get(path, headers=who.headers)
        assert response.status_code == 200, response.text
        return dict(response.json()["quota"])

    before = await quota(f"/api/widgets/{widget['id']}/analytics", shop.buyer)
    await send(4)
    # The same reports again: the rest of them comes from the cache, the quota does not.
    warned = await quota(f"/api/widgets/{widget['id']}/analytics", shop.buyer)
    via_analytics = await quota(f"/api/analytics/widgets/{widget['id']}", shop.builder)
    await send(1)
    reached = await quota(f"/api/analytics/widgets/{second['id']}", shop.buyer)

    assert before == {"month": month, "limit": 5, "used": 0, "remaining": 5, "percent": 0.0}
    assert warned == via_analytics == {"month": month, "limit": 5, "used": 4, "remaining": 1, "percent": 80.0}
    assert reached == {"month": month, "limit": 5, "used": 5, "remaining": 0, "percent": 100.0}


async def test_an_unlimited_plan_has_no_remaining_nor_percent(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)
    session = await open_session(client, widget)

    async with widget_quota_of_every_plan(None):
        chat = await client.post("/widget/v1/chat", json={"message": "Hi"}, headers=visitor_headers(session))
        report = await client.get(f"/api/widgets/{widget['id']}/analytics", headers=shop.buyer.headers)

    assert chat.status_code == 200, chat.text
    quota = report.json()["quota"]
    assert (quota["limit"], quota["used"], quota["remaining"], quota["percent"]) == (None, 1, None, None)
