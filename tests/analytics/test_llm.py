"""What builders and administrators read about LLM answers (``chat.message``): tokens, cost,
answers per model and channel, latency. Numbers are those of ``answers(w)`` in world.py."""

from typing import Any

import httpx
import pytest

from app.core.config import Settings
from tests.analytics.marts import publish
from tests.analytics.world import MARCH, World, build_world, marts


@pytest.fixture
async def world(client: httpx.AsyncClient) -> World:
    return await build_world(client)


async def get(client: httpx.AsyncClient, path: str, who: Any) -> dict[str, Any]:
    response = await client.get(path, headers=who.headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


NOTHING = {
    "answers": 0,
    "studioAnswers": 0,
    "widgetAnswers": 0,
    "conversations": 0,
    "inputTokens": 0,
    "outputTokens": 0,
    "costUsd": "0",
    "unpricedAnswers": 0,
    "toolCalls": 0,
    "latencyP50Ms": None,
    "latencyP95Ms": None,
    "firstTokenP50Ms": None,
    "firstTokenP95Ms": None,
}


async def test_a_builder_sees_their_projects_tokens_cost_and_latency_with_studio_test_chats(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    publish(settings.warehouse_dir, marts(world))

    body = await get(client, f"/api/projects/{world.copilot}/analytics?{MARCH}&granularity=week", world.ada)
    admin = await get(
        client, f"/api/analytics/projects/{world.copilot}?{MARCH}&granularity=week", world.admin
    )

    assert body == admin
    llm = body["llm"]
    # Two studio answers on the 2nd, three widget answers (one without a price); the April
    # answer is outside the range.
    assert llm["totals"] == {
        "answers": 5,
        "studioAnswers": 2,
        "widgetAnswers": 3,
        "conversations": 4,
        "inputTokens": 1000 + 1500 + 700 + 2000 + 50,
        "outputTokens": 200 + 300 + 100 + 400 + 50,
        "costUsd": "0.00484",
        "unpricedAnswers": 1,
        "toolCalls": 1,
        # Latencies 20, 600, 800, 1000, 1200 ms; first tokens 150, 200, 300 (two not streamed).
        "latencyP50Ms": 800,
        "latencyP95Ms": 1160,
        "firstTokenP50Ms": 200,
        "firstTokenP95Ms": 290,
    }
    assert [
        (
            m["provider"],
            m["model"],
            m["channel"],
            m["answers"],
            m["inputTokens"],
            m["outputTokens"],
            m["costUsd"],
        )
        for m in llm["byModel"]
    ] == [
        ("openai", "gpt-4o-mini", "studio", 2, 2500, 500, "0.000675"),
        ("anthropic", "claude-haiku-4-5", "widget", 1, 2000, 400, "0.004"),
        ("openai", "gpt-4o-mini", "widget", 1, 700, 100, "0.000165"),
        ("offline", "echo", "widget", 1, 50, 50, "0"),
    ]
    studio = llm["byModel"][0]
    assert (studio["latencyP50Ms"], studio["latencyP95Ms"], studio["firstTokenP95Ms"]) == (1000, 1180, 295)
    assert llm["byModel"][3]["unpricedAnswers"] == 1
    assert [
        (p["periodStart"], p["studioAnswers"], p["widgetAnswers"], p["inputTokens"], p["costUsd"])
        for p in llm["series"]
    ] == [("2026-03-02", 2, 1, 3200, "0.00084"), ("2026-03-09", 0, 2, 2050, "0.004")]
    # Widget beacons stay the widgets' own analytics: the answers are not added to `messages`.
    assert body["usage"]["messages"] == 20

    top_two = await get(client, f"/api/analytics/projects/{world.copilot}?{MARCH}&limit=2", world.ada)
    assert len(top_two["llm"]["byModel"]) == 2


async def test_a_builders_own_analytics_total_the_llm_use_of_all_their_projects(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    publish(settings.warehouse_dir, marts(world))

    march = await get(client, f"/api/analytics/user/{world.ada.id}?{MARCH}", world.ada)
    april = await get(client, f"/api/users/{world.ada.id}/analytics?from=2026-04-01&to=2026-04-30", world.ada)

    llm = march["builder"]["llm"]
    # Copilot's five answers and Recipes' unpriced studio answer; Grace's are not Ada's.
    assert (llm["answers"], llm["studioAnswers"], llm["widgetAnswers"], llm["conversations"]) == (6, 3, 3, 5)
    assert (llm["inputTokens"], llm["outputTokens"], llm["costUsd"], llm["unpricedAnswers"]) == (
        5550,
        1080,
        "0.00484",
        2,
    )
    assert (llm["latencyP50Ms"], llm["latencyP95Ms"]) == (700, 1150)
    assert (april["builder"]["llm"]["answers"], april["builder"]["llm"]["costUsd"]) == (1, "0.000021")
    shop = await get(client, f"/api/analytics/user/{world.shop1.id}?{MARCH}", world.shop1)
    assert shop["builder"] is None


async def test_admins_see_platform_wide_tokens_and_cost_by_model(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    publish(settings.warehouse_dir, marts(world))

    body = await get(client, f"/api/analytics/platform?{MARCH}&granularity=month", world.admin)
    euros = await get(client, f"/api/analytics/platform?{MARCH}&currency=eur", world.admin)

    llm = body["llm"]
    assert (llm["totals"]["answers"], llm["totals"]["studioAnswers"], llm["totals"]["widgetAnswers"]) == (
        7,
        4,
        3,
    )
    assert (llm["totals"]["inputTokens"], llm["totals"]["outputTokens"]) == (10550, 2080)
    assert (llm["totals"]["costUsd"], llm["totals"]["unpricedAnswers"]) == ("0.00619", 2)
    assert [
        (m["model"], m["channel"], m["answers"], m["conversations"], m["costUsd"]) for m in llm["byModel"]
    ] == [
        ("gpt-4o-mini", "studio", 3, 2, "0.002025"),
        ("claude-haiku-4-5", "widget", 1, 1, "0.004"),
        ("gpt-4o-mini", "widget", 1, 1, "0.000165"),
        ("echo", "widget", 1, 1, "0"),
        ("echo", "studio", 1, 1, "0"),
    ]
    assert [(p["periodStart"], p["answers"], p["costUsd"]) for p in llm["series"]] == [
        ("2026-03-01", 7, "0.00619")
    ]
    # Costs are US dollars whatever currency the money is asked in.
    assert euros["llm"]["totals"]["costUsd"] == "0.00619"


async def test_llm_sections_are_zeros_before_the_first_publish_and_on_a_version_without_llm_marts(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    unpublished = await get(client, f"/api/analytics/projects/{world.copilot}?{MARCH}", world.ada)
    assert unpublished["llm"] == {"totals": NOTHING, "byModel": [], "series": []}

    # A version the pipeline published before the LLM marts existed still answers.
    publish(settings.warehouse_dir, marts(world), without=("fct_chat_messages", "llm_usage_daily"))

    project = await get(client, f"/api/analytics/projects/{world.copilot}?{MARCH}", world.ada)
    builder = await get(client, f"/api/analytics/user/{world.ada.id}?{MARCH}", world.ada)
    platform = await get(client, f"/api/analytics/platform?{MARCH}", world.admin)

    assert project["warehouse"] is not None
    assert project["revenue"]["sales"] == 3
    assert project["llm"] == {"totals": NOTHING, "byModel": [], "series": []}
    assert builder["builder"]["llm"] == NOTHING
    assert platform["llm"]["totals"] == NOTHING


async def test_another_builder_cannot_read_a_projects_llm_numbers(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    publish(settings.warehouse_dir, marts(world))

    theirs = await client.get(f"/api/projects/{world.copilot}/analytics?{MARCH}", headers=world.grace.headers)
    grace = await get(client, f"/api/analytics/user/{world.grace.id}?{MARCH}", world.grace)

    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "project_not_found"
    assert (grace["builder"]["llm"]["answers"], grace["builder"]["llm"]["costUsd"]) == (1, "0.00135")


async def test_a_widgets_analytics_count_the_answers_its_visitors_got_server_side(
    client: httpx.AsyncClient, world: World, settings: Settings
) -> None:
    publish(settings.warehouse_dir, marts(world))

    w1 = await get(client, f"/api/analytics/widgets/{world.w1}?{MARCH}", world.shop1)
    w2 = await get(client, f"/api/analytics/widgets/{world.w2}?{MARCH}", world.admin)

    # The billing truth beside the beacons: the two answers w1's visitors got in March.
    assert w1["llm"] == {
        "answers": 2,
        "studioAnswers": 0,
        "widgetAnswers": 2,
        "conversations": 2,
        "inputTokens": 700 + 2000,
        "outputTokens": 100 + 400,
        "costUsd": "0.004165",
        "unpricedAnswers": 0,
        "toolCalls": 0,
        "latencyP50Ms": 800,
        "latencyP95Ms": 980,
        "firstTokenP50Ms": 150,
        "firstTokenP95Ms": 150,
    }
    assert (w2["llm"]["answers"], w2["llm"]["unpricedAnswers"], w2["llm"]["costUsd"]) == (1, 1, "0")
    assert w1["usage"]["messages"] == 16  # what its script reported, kept apart
