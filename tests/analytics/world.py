"""A small marketplace with known numbers in the marts, for the analytics tests.

Builders Ada (projects Copilot and Recipes) and Grace (Contracts, priced in EUR); end users
Shop1 and Shop2; an administrator. Widgets: ``w1`` (Copilot, Shop1), ``w2`` (Copilot, Shop2),
``w3`` (Contracts, Shop1). Everything happens in March 2026, except one Copilot sale and one
studio answer on 2 April and Shop1's usage today (for the monthly quota).

LLM answers (``chat.message``) in March: Ada tests Copilot in the studio on the 2nd (two
gpt-4o-mini answers in one chat) and Recipes on the 5th (a model without a price); Copilot
answers w1's visitors on the 3rd (gpt-4o-mini) and the 10th (claude-haiku-4-5, not streamed)
and w2's on the 10th (no price); Grace tests Contracts on the 4th. ``answers(w)`` lists them.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx

from tests.analytics.marts import activity_rows, chat_rows, revenue_row, usage_rows
from tests.factories import Account, create_project, signed_in

MARCH = "from=2026-03-01&to=2026-03-31"


@dataclass
class World:
    admin: Account
    ada: Account
    grace: Account
    shop1: Account
    shop2: Account
    copilot: UUID
    recipes: UUID
    contracts: UUID
    w1: UUID
    w2: UUID
    w3: UUID


async def build_world(client: httpx.AsyncClient) -> World:
    ada = await signed_in(client, "builder")
    grace = await signed_in(client, "builder")
    return World(
        admin=await signed_in(client, "super_admin"),
        ada=ada,
        grace=grace,
        shop1=await signed_in(client, "end_user"),
        shop2=await signed_in(client, "end_user"),
        copilot=await create_project(ada, name="Copilot"),
        recipes=await create_project(ada, name="Recipes"),
        contracts=await create_project(grace, name="Contracts"),
        w1=uuid4(),
        w2=uuid4(),
        w3=uuid4(),
    )


def d(day: str) -> date:
    return date.fromisoformat(day)


def answers(w: World) -> list[dict[str, Any]]:
    """The LLM answers, as ``fct_chat_messages`` rows (without their ids)."""
    ada, grace = w.ada.id, w.grace.id

    def answer(
        day: str, project: UUID, builder: UUID, chat: str, model: str, tokens: tuple[int, int], **rest: Any
    ) -> dict[str, Any]:
        provider = {"gpt-4o-mini": "openai", "claude-haiku-4-5": "anthropic"}.get(model, "offline")
        return {
            "day": d(day),
            "answered_at": datetime.fromisoformat(f"{day}T12:00:00+00:00"),
            "project_id": project,
            "builder_id": builder,
            "channel": "widget" if "widget_id" in rest else "studio",
            "chat_id": chat,
            "provider": provider,
            "model": model,
            "input_tokens": tokens[0],
            "output_tokens": tokens[1],
            **rest,
        }

    studio = {"user_id": ada}
    return [
        answer("2026-03-02", w.copilot, ada, "s1", "gpt-4o-mini", (1000, 200), latency_ms=800,
               first_token_ms=200, tool_calls=1, cost_usd="0.000270", **studio),
        answer("2026-03-02", w.copilot, ada, "s1", "gpt-4o-mini", (1500, 300), latency_ms=1200,
               first_token_ms=300, cost_usd="0.000405", **studio),
        answer("2026-03-03", w.copilot, ada, "c1", "gpt-4o-mini", (700, 100), latency_ms=600,
               first_token_ms=150, cost_usd="0.000165", widget_id=w.w1),
        answer("2026-03-10", w.copilot, ada, "c2", "claude-haiku-4-5", (2000, 400), latency_ms=1000,
               cost_usd="0.004000", widget_id=w.w1),
        answer("2026-03-10", w.copilot, ada, "c3", "echo", (50, 50), latency_ms=20, widget_id=w.w2),
        answer("2026-04-02", w.copilot, ada, "s2", "gpt-4o-mini", (100, 10), latency_ms=300,
               first_token_ms=90, cost_usd="0.000021", **studio),
        answer("2026-03-05", w.recipes, ada, "s3", "echo", (300, 30), latency_ms=400, **studio),
        answer("2026-03-04", w.contracts, grace, "s4", "gpt-4o-mini", (5000, 1000), latency_ms=2000,
               first_token_ms=500, cost_usd="0.001350", user_id=grace),
    ]  # fmt: skip


def marts(w: World) -> dict[str, list[dict[str, Any]]]:
    ada, grace, shop1, shop2 = w.ada.id, w.grace.id, w.shop1.id, w.shop2.id
    today = datetime.now(UTC).date()

    def sale(buyer: UUID, project: UUID, builder: UUID, day: str, gross: int, **extra: Any) -> dict[str, Any]:
        return {
            "purchase_id": uuid4(),
            "project_id": project,
            "builder_id": builder,
            "buyer_id": buyer,
            "currency": extra.get("currency", "usd"),
            "completed_day": d(day),
            "gross_minor": gross,
            "is_refunded": extra.get("refunded", False),
        }

    def use(
        day: date, widget: UUID, project: UUID, builder: UUID, end_user: UUID, **counts: int
    ) -> dict[str, Any]:
        return {
            "day": day,
            "widget_id": widget,
            "project_id": project,
            "builder_id": builder,
            "end_user_id": end_user,
            **counts,
        }

    return {
        **chat_rows(answers(w)),
        "revenue_daily": [
            revenue_row(d("2026-03-02"), w.copilot, ada, sales=2, gross=3800),
            revenue_row(d("2026-03-10"), w.copilot, ada, sales=1, gross=1900, refunds=1, refunded_gross=1900),
            revenue_row(d("2026-03-03"), w.recipes, ada, sales=1, gross=900),
            revenue_row(d("2026-03-05"), w.contracts, grace, sales=1, gross=5000, currency="eur"),
            revenue_row(d("2026-04-02"), w.copilot, ada, sales=1, gross=1900),
        ],
        "fct_revenue_splits": [
            sale(shop1, w.copilot, ada, "2026-03-02", 1900),
            sale(shop2, w.copilot, ada, "2026-03-02", 1900),
            sale(shop1, w.recipes, ada, "2026-03-03", 900),
            sale(shop2, w.recipes, ada, "2026-03-10", 1900, refunded=True),
            sale(shop1, w.contracts, grace, "2026-03-05", 5000, currency="eur"),
            sale(shop1, w.copilot, ada, "2026-04-02", 1900),
        ],
        "payouts_daily": [
            {
                "day": d("2026-03-20"),
                "currency": "usd",
                "builder_id": ada,
                "payouts_created": 1,
                "created_minor": 3000,
                "payouts_paid": 1,
                "paid_minor": 3000,
            },
        ],
        "end_user_spend_daily": [
            {
                "day": d("2026-03-02"),
                "currency": "usd",
                "buyer_id": shop1,
                "purchases": 1,
                "spend_minor": 1900,
            },
            {
                "day": d("2026-03-03"),
                "currency": "usd",
                "buyer_id": shop1,
                "purchases": 1,
                "spend_minor": 900,
            },
            {
                "day": d("2026-03-05"),
                "currency": "eur",
                "buyer_id": shop1,
                "purchases": 1,
                "spend_minor": 5000,
            },
        ],
        "usage_by_period": usage_rows(
            [
                use(
                    d("2026-03-02"),
                    w.w1,
                    w.copilot,
                    ada,
                    shop1,
                    impressions=50,
                    opens=5,
                    messages=10,
                    tokens=1000,
                    sessions=3,
                    visitors=2,
                ),
                use(
                    d("2026-03-03"),
                    w.w1,
                    w.copilot,
                    ada,
                    shop1,
                    impressions=20,
                    opens=2,
                    messages=5,
                    tokens=500,
                    sessions=2,
                    visitors=2,
                ),
                use(
                    d("2026-03-09"),
                    w.w1,
                    w.copilot,
                    ada,
                    shop1,
                    messages=1,
                    tokens=100,
                    sessions=1,
                    visitors=1,
                ),
                use(
                    d("2026-03-02"),
                    w.w2,
                    w.copilot,
                    ada,
                    shop2,
                    messages=4,
                    tokens=400,
                    sessions=1,
                    visitors=1,
                ),
                use(
                    d("2026-03-04"),
                    w.w3,
                    w.contracts,
                    grace,
                    shop1,
                    messages=7,
                    tokens=700,
                    sessions=2,
                    visitors=2,
                ),
                use(today, w.w1, w.copilot, ada, shop1, messages=30, tokens=3000, sessions=1, visitors=1),
            ]
        ),
        "platform_activity": activity_rows(
            [
                {
                    "day": d("2026-03-02"),
                    "signups": 3,
                    "builder_signups": 1,
                    "end_user_signups": 2,
                    "purchases": 2,
                    "active_builders": 1,
                    "active_end_users": 2,
                    "listing_views": 20,
                },
                {
                    "day": d("2026-03-03"),
                    "signups": 1,
                    "end_user_signups": 1,
                    "purchases": 1,
                    "active_builders": 2,
                    "active_end_users": 3,
                    "listing_views": 10,
                },
                {
                    "day": d("2026-03-10"),
                    "purchases": 1,
                    "refunds": 1,
                    "active_builders": 1,
                    "active_end_users": 1,
                },
            ]
        ),
        "platform_money_daily": [
            {
                "day": d("2026-03-02"),
                "currency": "usd",
                "gmv_minor": 3800,
                "platform_fees_minor": 760,
                "net_revenue_minor": 760,
            },
            {
                "day": d("2026-03-03"),
                "currency": "usd",
                "gmv_minor": 900,
                "platform_fees_minor": 180,
                "net_revenue_minor": 180,
            },
            {"day": d("2026-03-10"), "currency": "usd", "gmv_minor": 1900, "refunded_minor": 1900},
            {
                "day": d("2026-03-05"),
                "currency": "eur",
                "gmv_minor": 5000,
                "platform_fees_minor": 1000,
                "net_revenue_minor": 1000,
            },
        ],
        "leaderboards": [
            {
                "board": "builders_by_revenue",
                "grain": "all_time",
                "period_start": d("1970-01-01"),
                "currency": "usd",
                "rank": 1,
                "entity_id": ada,
                "value": 6600,
            },
            {
                "board": "builders_by_revenue",
                "grain": "all_time",
                "period_start": d("1970-01-01"),
                "currency": "eur",
                "rank": 1,
                "entity_id": grace,
                "value": 5000,
            },
            *[
                {
                    "board": "projects_by_purchases",
                    "grain": "all_time",
                    "period_start": d("1970-01-01"),
                    "currency": "",
                    "rank": rank,
                    "entity_id": project,
                    "value": value,
                }
                for rank, (project, value) in enumerate([(w.copilot, 3), (w.recipes, 1), (w.contracts, 1)], 1)
            ],
            {
                "board": "projects_by_usage",
                "grain": "all_time",
                "period_start": d("1970-01-01"),
                "currency": "",
                "rank": 1,
                "entity_id": w.copilot,
                "value": 50,
            },
            {
                "board": "widgets_by_usage",
                "grain": "all_time",
                "period_start": d("1970-01-01"),
                "currency": "",
                "rank": 1,
                "entity_id": w.w1,
                "value": 46,
            },
            {
                "board": "builders_by_revenue",
                "grain": "month",
                "period_start": d("2026-03-01"),
                "currency": "usd",
                "rank": 1,
                "entity_id": ada,
                "value": 4700,
            },
        ],
        "dim_projects": [
            {
                "project_id": w.copilot,
                "builder_id": ada,
                "name": "Copilot",
                "listing_id": uuid4(),
                "listing_status": "active",
                "currency": "usd",
                "price_minor": 1900,
            },
            {
                "project_id": w.recipes,
                "builder_id": ada,
                "name": "Recipes",
                "listing_id": uuid4(),
                "listing_status": "held",
                "currency": "usd",
                "price_minor": 900,
            },
            {
                "project_id": w.contracts,
                "builder_id": grace,
                "name": "Contracts",
                "listing_id": uuid4(),
                "listing_status": "active",
                "currency": "eur",
                "price_minor": 5000,
            },
        ],
    }
