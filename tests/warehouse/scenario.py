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
* widget usage on three widgets; one message beacon and one sale land twice.
"""

from pathlib import Path
from typing import Any

from tests.warehouse.landing import Story, local_split, uid

MONDAY_LANDED = "2026-11-02T23:00:00"
TUESDAY_LANDED = "2026-11-03T23:00:00"
WEDNESDAY_LANDED = "2026-11-04T23:00:00"

SUPPORT_BOT_SPLIT = local_split(2000)  # (2000, 88, 200, 1712)
SALES_PAL_SPLIT = local_split(5000)  # (5000, 175, 500, 4325)
PLAN_GROSS, PLAN_TAX = 2390, 390
PLAN_PROCESSOR_FEE = PLAN_GROSS * 29 // 1000 + 30  # 99


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
    wednesday.land(root, WEDNESDAY_LANDED)


def land_friday_sale(root: Path, landed: str, relanded_events: list[dict[str, Any]]) -> None:
    """A later batch: buyer-2 buys Sales Pal on Friday; `relanded_events` land again with it."""
    sales_pal_listing = Story().listing_published(
        "listing-sales-pal", "sales-pal", "builder-2", 5000, "2026-11-02T09:32:00"
    )
    friday = Story()
    friday.sale("purchase-5", sales_pal_listing, "buyer-2", "2026-11-06T09:00:00")
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


__all__ = ["land_friday_sale", "land_marketplace_story", "uid"]
