"""The API reading what dbt really built: the marketplace story's LLM answers, published by
the pipeline's publish step, served by `/api/analytics/platform` to the token and the cent."""

import shutil
from pathlib import Path

import httpx

from app.core.config import Settings
from app.core.warehouse_layout import WarehouseLayout
from tests.analytics.marts import point_current_at
from tests.factories import signed_in


async def test_the_api_serves_the_built_llm_marts(
    client: httpx.AsyncClient, settings: Settings, published_file: Path
) -> None:
    version = published_file.resolve().parent.name
    served = WarehouseLayout(settings.warehouse_dir).served_file(version)
    served.parent.mkdir(parents=True)
    shutil.copyfile(published_file, served)
    point_current_at(settings.warehouse_dir, version)
    admin = await signed_in(client, "super_admin")

    response = await client.get(
        "/api/analytics/platform?from=2026-11-02&to=2026-11-04&granularity=day", headers=admin.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["warehouse"]["version"] == version
    assert body["kpis"]["gmvMinor"] == 9000
    llm = body["llm"]
    # Seven answers (Monday's relanded one once); latencies 500..2,000 ms, first tokens
    # 100..400 ms (the unpriced echo answer was not streamed).
    assert llm["totals"] == {
        "answers": 7,
        "studioAnswers": 5,
        "widgetAnswers": 2,
        "conversations": 5,
        "inputTokens": 7100,
        "outputTokens": 1870,
        "costUsd": "0.005907",
        "unpricedAnswers": 1,
        "toolCalls": 3,
        "latencyP50Ms": 900,
        "latencyP95Ms": 1850,
        "firstTokenP50Ms": 235,
        "firstTokenP95Ms": 375,
    }
    assert [
        (m["model"], m["channel"], m["answers"], m["inputTokens"], m["costUsd"]) for m in llm["byModel"]
    ] == [
        ("gpt-4o-mini", "studio", 3, 2800, "0.000882"),
        ("gpt-4o-mini", "widget", 2, 1700, "0.000525"),
        ("claude-haiku-4-5", "studio", 1, 2000, "0.0045"),
        ("echo", "studio", 1, 600, "0"),
    ]
    assert [(p["periodStart"], p["answers"], p["costUsd"]) for p in llm["series"]] == [
        ("2026-11-02", 3, "0.001077"),
        ("2026-11-03", 2, "0.004785"),
        ("2026-11-04", 2, "0.000045"),
    ]
