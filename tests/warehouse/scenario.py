"""Three days of a small marketplace, landed in three batches (Monday 2 to Wednesday 4
November 2026, UTC), with the at-least-once duplicates the worker can produce.

What happened, in the numbers a user would check:

* five accounts on Monday: an admin (create-admin), builders `builder-1` (builder) and
  `builder-2` (builder + end user), end users `buyer-1`, `buyer-2`;
* `builder-1` lists "Support Bot" at $20.00 and "Free Helper" for free; `builder-2` lists
  "Sales Pal" at $50.00;
* Monday: buyer-1 and buyer-2 each buy Support Bot; Tuesday: buyer-1 buys Sales Pal, buyer-2
  takes Free Helper, buyer-1 pays a $23.90 plan ($3.90 of it tax); Wednesday: buyer-2's
  Support Bot purchase is refunded, builder-1 is paid out $17.12, builder-2's payout of $43.25
  fails;
* widget usage on three widgets; one message beacon and one sale land twice;
* LLM answers (`chat.message`): builder-1 tests Support Bot in the studio on Monday (two
  gpt-4o-mini answers, the second landing again on Tuesday) and Tuesday (one claude-haiku-4-5
  answer); widget-1's visitor gets a gpt-4o-mini answer on Monday and another in the same chat
  on Tuesday; on Wednesday builder-2 tries Sales Pal on a model with no price and the admin
  tries Support Bot (which does not make the admin an active builder). `ANSWERS` lists them.
"""

from pathlib import Path
from typing import Any, NamedTuple

from tests.warehouse.landing import Story, local_split, uid

MONDAY_LANDED = "2026-11-02T23:00:00"
TUESDAY_LANDED = "2026-11-03T23:00:00"
WEDNESDAY_LANDED = "2026-11-04T23:00:00"

SUPPORT_BOT_SPLIT = local_split(2000)  # (2000, 88, 200, 1712)
SALES_PAL_SPLIT = local_split(5000)  # (5000, 175, 500, 4325)
PLAN_GROSS, PLAN_TAX = 2390, 390
PLAN_PROCESSOR_FEE = PLAN_GROSS * 29 // 1000 + 30  # 99


class Answer(NamedTuple):
    """One of the story's LLM answers (a `chat.message`): a studio answer names its `user`, a
    widget answer its `widget`."""

    chat: str
    project: str
    when: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    latency_ms: int
    first_token_ms: int | None
    cost_usd: str | None
    user: str | None = None
    widget: str | None = None
    tool_calls: int = 0


ANSWERS = {
    "a1": Answer(
        chat="studio-chat-1",
        project="support-bot",
        when="2026-11-02T10:30:00",
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=1200,
        output_tokens=300,
        latency_ms=900,
        first_token_ms=250,
        cost_usd="0.000360",
        user="builder-1",
    ),
    "a2": Answer(
        chat="studio-chat-1",
        project="support-bot",
        when="2026-11-02T10:31:00",
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=1500,
        output_tokens=420,
        latency_ms=1100,
        first_token_ms=300,
        cost_usd="0.000477",
        user="builder-1",
        tool_calls=1,
    ),
    "a3": Answer(
        chat="widget-chat-1",
        project="support-bot",
        when="2026-11-02T12:03:30",
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=800,
        output_tokens=200,
        latency_ms=700,
        first_token_ms=200,
        cost_usd="0.000240",
        widget="widget-1",
    ),
    "a5": Answer(
        chat="widget-chat-1",
        project="support-bot",
        when="2026-11-03T12:02:30",
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=900,
        output_tokens=250,
        latency_ms=800,
        first_token_ms=220,
        cost_usd="0.000285",
        widget="widget-1",
        tool_calls=2,
    ),
    "a6": Answer(
        chat="studio-chat-3",
        project="support-bot",
        when="2026-11-03T15:00:00",
        provider="anthropic",
        model="claude-haiku-4-5",
        input_tokens=2000,
        output_tokens=500,
        latency_ms=1500,
        first_token_ms=400,
        cost_usd="0.004500",
        user="builder-1",
    ),
    "a4": Answer(
        chat="studio-chat-2",
        project="sales-pal",
        when="2026-11-04T09:40:00",
        provider="offline",
        model="echo",
        input_tokens=600,
        output_tokens=150,
        latency_ms=2000,
        first_token_ms=None,
        cost_usd=None,
        user="builder-2",
    ),
    "a7": Answer(
        chat="admin-chat",
        project="support-bot",
        when="2026-11-04T11:00:00",
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=100,
        output_tokens=50,
        latency_ms=500,
        first_token_ms=100,
        cost_usd="0.000045",
        user="admin",
    ),
}


def answer(story: Story, key: str) -> dict[str, Any]:
    """Record the story's answer ``key`` in ``story``; widget answers come from visitor-1."""
    recorded = ANSWERS[key]
    return story.chat_message(**recorded._asdict(), visitor="visitor-1" if recorded.widget else None)


def land_marketplace_story(root: Path) -> None:
    monday = Story()
    monday.user_created("admin", ["super_admin"], "2026-11-02T08:00:00", signup=False)
    monday.user_created("builder-1", ["builder"], "2026-11-02T09:00:00")
    monday.user_created("builder-2", ["builder", "end_user"], "2026-11-02T09:01:00")
    monday.user_created("buyer-1", ["end_user"], "2026-11-02T09:02:00")
    monday.user_created("buyer-2", ["end_user"], "2026-11-02T09:03:00")
    monday.login("builder-1", "builder", "2026-11-02T09:10:00")
    monday.login("buyer-1", "end_user", "2026-11-02T09:11:00")
    monday.project_created("support-bot", "builder-1", "Support Bot", "2026-11-02T09:20:00")
    monday.project_created("free-helper", "builder-1", "Free Helper", "2026-11-02T09:21:00")
    monday.project_created("sales-pal", "builder-2", "Sales Pal", "2026-11-02T09:22:00")
    support_bot = monday.listing_published(
        "listing-support-bot", "support-bot", "builder-1", 2000, "2026-11-02T09:30:00"
    )
    free_helper = monday.listing_published(
        "listing-free-helper", "free-helper", "builder-1", 0, "2026-11-02T09:31:00"
    )
    sales_pal = monday.listing_published(
        "listing-sales-pal", "sales-pal", "builder-2", 5000, "2026-11-02T09:32:00"
    )
    first_sale = monday.sale("purchase-1", support_bot, "buyer-1", "2026-11-02T10:00:00")
    monday.sale("purchase-2", support_bot, "buyer-2", "2026-11-02T11:00:00")
    # widget-1 (Support Bot on buyer-1's site): 3 visitors, 2 sessions, 4 messages.
    for visitor in ("visitor-1", "visitor-2", "visitor-3"):
        monday.beacon(
            "widget-1",
            "support-bot",
            "buyer-1",
            "impression",
            "2026-11-02T12:00:00",
            visitor=visitor,
            session=None,
        )
    monday.beacon(
        "widget-1",
        "support-bot",
        "buyer-1",
        "open",
        "2026-11-02T12:01:00",
        visitor="visitor-1",
        session="session-a",
    )
    monday.beacon(
        "widget-1",
        "support-bot",
        "buyer-1",
        "open",
        "2026-11-02T12:02:00",
        visitor="visitor-2",
        session="session-b",
    )
    relanded_message = monday.beacon(
        "widget-1",
        "support-bot",
        "buyer-1",
        "message",
        "2026-11-02T12:03:00",
        visitor="visitor-1",
        session="session-a",
        latency_ms=300,
        customer="host-user-9",
    )
    for minute, latency in ((4, 500), (5, 700), (6, 500)):
        monday.beacon(
            "widget-1",
            "support-bot",
            "buyer-1",
            "message",
            f"2026-11-02T12:0{minute}:00",
            visitor="visitor-2",
            session="session-b",
            latency_ms=latency,
        )
    monday.beacon(
        "widget-1", "support-bot", "buyer-1", "tokens", "2026-11-02T12:07:00", session="session-a", count=120
    )
    monday.beacon(
        "widget-1", "support-bot", "buyer-1", "tokens", "2026-11-02T12:08:00", session="session-b", count=80
    )
    # widget-3 (Support Bot on buyer-2's site).
    monday.beacon(
        "widget-3",
        "support-bot",
        "buyer-2",
        "message",
        "2026-11-02T13:00:00",
        visitor="visitor-7",
        session="session-c",
    )
    answer(monday, "a1")
    relanded_answer = answer(monday, "a2")
    answer(monday, "a3")
    monday.land(root, MONDAY_LANDED)

    tuesday = Story()
    tuesday.sale("purchase-3", sales_pal, "buyer-1", "2026-11-03T09:00:00")
    tuesday.sale("purchase-4", free_helper, "buyer-2", "2026-11-03T09:30:00")
    tuesday.plan_paid("buyer-1", PLAN_GROSS, PLAN_TAX, "2026-11-03T10:00:00")
    tuesday.roles_changed("buyer-2", ["end_user"], ["builder", "end_user"], "2026-11-03T11:00:00")
    # Monday's first sale lands again (the relay crashed before acknowledging it).
    tuesday.reland(first_sale["settlement"])
    tuesday.reland(first_sale["completed"])
    tuesday.beacon(
        "widget-2",
        "sales-pal",
        "buyer-1",
        "message",
        "2026-11-03T12:00:00",
        visitor="visitor-4",
        session="session-d",
    )
    tuesday.beacon(
        "widget-2",
        "sales-pal",
        "buyer-1",
        "message",
        "2026-11-03T12:01:00",
        visitor="visitor-4",
        session="session-d",
    )
    tuesday.beacon(
        "widget-1",
        "support-bot",
        "buyer-1",
        "message",
        "2026-11-03T12:02:00",
        visitor="visitor-1",
        session="session-e",
    )
    # Monday's first message beacon lands again, in another file.
    tuesday.beacons.append(dict(relanded_message))
    answer(tuesday, "a5")
    answer(tuesday, "a6")
    tuesday.reland(relanded_answer)
    tuesday.land(root, TUESDAY_LANDED)

    wednesday = Story()
    wednesday.refund("purchase-2", support_bot, "buyer-2", "admin", "2026-11-04T10:00:00")
    wednesday.payout(
        "payout-1", "builder-1", SUPPORT_BOT_SPLIT[3], "2026-11-04T12:00:00", "2026-11-04T13:00:00", paid=True
    )
    wednesday.payout(
        "payout-2", "builder-2", SALES_PAL_SPLIT[3], "2026-11-04T12:00:00", "2026-11-04T13:00:00", paid=False
    )
    wednesday.beacon(
        "widget-2",
        "sales-pal",
        "buyer-1",
        "impression",
        "2026-11-04T08:00:00",
        visitor="visitor-5",
        session=None,
    )
    answer(wednesday, "a4")
    answer(wednesday, "a7")
    wednesday.land(root, WEDNESDAY_LANDED)


def land_friday_sale(root: Path, landed: str, relanded_events: list[dict[str, Any]]) -> None:
    """A later batch: buyer-2 buys Sales Pal on Friday and builder-2 tries it in the studio
    (a gpt-4o-mini answer of 700 + 80 tokens, $0.000123); `relanded_events` land again with it."""
    sales_pal_listing = Story().listing_published(
        "listing-sales-pal", "sales-pal", "builder-2", 5000, "2026-11-02T09:32:00"
    )
    friday = Story()
    friday.sale("purchase-5", sales_pal_listing, "buyer-2", "2026-11-06T09:00:00")
    friday.chat_message(
        "studio-chat-4",
        "sales-pal",
        "2026-11-06T09:30:00",
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=700,
        output_tokens=80,
        latency_ms=600,
        first_token_ms=150,
        cost_usd="0.000123",
        user="builder-2",
    )
    friday.events.extend(relanded_events)
    friday.beacon(
        "widget-2",
        "sales-pal",
        "buyer-1",
        "message",
        "2026-11-06T10:00:00",
        visitor="visitor-4",
        session="session-f",
    )
    friday.land(root, landed)


__all__ = ["ANSWERS", "Answer", "land_friday_sale", "land_marketplace_story", "uid"]
