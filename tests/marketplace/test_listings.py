"""Listings: publishing, moderation (the listing state machine, exhaustively), review, and
browsing the marketplace.

The allowed moderation moves are written out below by hand (the spec); the code's table is
checked against them, and every expected outcome is derived from them.
"""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select, update

from app.core.db import commit, sessionmaker
from app.marketplace.states import ADMIN_TRANSITIONS, EVENT_OF, PROJECT_STATUS
from app.models import Listing, ListingStatus, Project, ProjectStatus
from app.projects.states import marketplace_may_move
from tests.factories import Account, create_project, events_of, signed_in
from tests.marketplace.steps import (
    buy,
    error_code,
    listed_project,
    moderate,
    publish,
    ready_project,
)
from tests.matrix import event_count


async def listing_events() -> list[dict[str, Any]]:
    """The listing's own events, without the views its page counts."""
    return [e for e in await events_of("listing.") if e["type"] != "listing.viewed"]


LISTING_STATUSES = ["pending_review", "active", "held", "delisted"]
MODERATION_TARGETS = ["active", "held", "delisted"]  # what PUT .../status accepts

# The spec: what an administrator may do to a listing.
MODERATION_MOVES = {
    ("pending_review", "active"),
    ("pending_review", "delisted"),
    ("active", "held"),
    ("active", "delisted"),
    ("held", "active"),
    ("held", "delisted"),
}
# The spec: the project's status while its listing is in each status.
PROJECT_STATUS_OF = {
    "pending_review": "ready",
    "active": "published",
    "held": "held",
    "delisted": "ready",
}
EVENT_OF_TARGET = {"active": "listing.activated", "held": "listing.held", "delisted": "listing.delisted"}


def listing_payload(listing: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The payload every ``listing.*`` event carries, from the API's view of the listing."""
    return {
        "listingId": listing["id"],
        "projectId": listing["projectId"],
        "builderId": listing["builderId"],
        "status": listing["status"],
        "priceMinor": listing["priceMinor"],
        "currency": listing["currency"],
        "category": listing["category"],
        **changes,
    }


async def listing_row(project_id: UUID) -> Listing:
    async with sessionmaker()() as db:
        return (await db.execute(select(Listing).where(Listing.project_id == project_id))).scalar_one()


async def project_status(project_id: UUID) -> str:
    async with sessionmaker()() as db:
        project = await db.get(Project, project_id)
        assert project is not None
        return project.status


async def listing_count() -> int:
    async with sessionmaker()() as db:
        return int((await db.execute(select(func.count()).select_from(Listing))).scalar_one())


async def browse(
    client: httpx.AsyncClient, query: str = "", headers: dict[str, str] | None = None
) -> list[str]:
    """Titles of what browsing shows, in order (first page of 100)."""
    response = await client.get(f"/api/marketplace/projects?limit=100&{query}", headers=headers or {})
    assert response.status_code == 200, response.text
    return [item["title"] for item in response.json()["items"]]


# --- publishing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"priceMinor": -1}, "priceMinor"),
        ({"priceMinor": 19.5}, "priceMinor"),
        ({"priceMinor": 19.0}, "priceMinor"),
        ({"priceMinor": "1900"}, "priceMinor"),
        ({"priceMinor": True}, "priceMinor"),
        ({"priceMinor": None}, "priceMinor"),
        ({"priceMinor": 100_000_001}, "priceMinor"),
        ({"currency": "us"}, "currency"),
        ({"currency": "usdx"}, "currency"),
        ({"currency": "u5d"}, "currency"),
        ({"category": "toys"}, "category"),
        ({"category": ""}, "category"),
        ({"description": ""}, "description"),
        ({"description": "x" * 5001}, "description"),
        ({"tags": ["a/b"]}, "tags"),
        ({"tags": [""]}, "tags"),
        ({"tags": ["x" * 41]}, "tags"),
        ({"tags": [f"t{i}" for i in range(11)]}, "tags"),
        ({"tags": "support"}, "tags"),
        ({"title": ""}, "title"),
        ({"status": "active"}, "status"),
        ({"builderId": "00000000-0000-0000-0000-000000000000"}, "builderId"),
    ],
    ids=lambda value: repr(value)[:40],
)
async def test_publish_refuses_an_invalid_body_and_lists_nothing(
    client: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    builder = await signed_in(client, "builder")
    project = await ready_project(client, builder)
    events_before = await event_count()

    refused = await publish(client, builder, project, expect=422, **changes)

    assert refused["error"]["code"] == "validation_error"
    assert [e["loc"][:2] for e in refused["error"]["details"]["errors"]] == [["body", field]]
    assert await listing_count() == 0
    assert await event_count() == events_before
    assert await project_status(project) == "ready"


async def test_publish_refuses_a_body_without_the_required_fields(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    project = await ready_project(client, builder)

    response = await client.post(
        f"/api/marketplace/projects/{project}/publish", json={}, headers=builder.headers
    )

    assert response.status_code == 422
    missing = {e["loc"][1] for e in response.json()["error"]["details"]["errors"]}
    assert missing == {"priceMinor", "description", "category"}


async def test_publish_normalizes_currency_and_tags_and_titles_the_listing_after_the_project(
    client: httpx.AsyncClient,
) -> None:
    builder = await signed_in(client, "builder")
    project = await ready_project(client, builder, name="Support Copilot")

    listing = await publish(
        client,
        builder,
        project,
        currency="EUR",
        tags=["Support", " support ", "Help Desk", "help desk", "faq"],
    )

    assert listing["currency"] == "eur"
    assert listing["tags"] == ["faq", "help desk", "support"]
    assert listing["title"] == "Support Copilot"
    assert (listing["status"], listing["priceMinor"], listing["purchaseCount"]) == ("active", 1900, 0)
    assert listing["publishedAt"] is not None
    assert listing["projectId"] == str(project)
    assert listing["builderId"] == str(builder.id)


async def test_publish_takes_an_own_title_and_a_zero_price(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    project = await ready_project(client, builder, name="internal-name-v3")

    listing = await publish(client, builder, project, title="  Homework Helper  ", priceMinor=0)

    assert (listing["title"], listing["priceMinor"]) == ("Homework Helper", 0)


@pytest.mark.parametrize("status", ["draft", "in_development", "archived"])
async def test_only_a_ready_project_can_be_published(client: httpx.AsyncClient, status: str) -> None:
    builder = await signed_in(client, "builder")
    project = await create_project(builder)
    if status != "draft":
        moved = await client.put(
            f"/api/projects/{project}/status", json={"status": status}, headers=builder.headers
        )
        assert moved.status_code == 200, moved.text
    events_before = await event_count()

    refused = await publish(client, builder, project, expect=409)

    assert refused["error"]["code"] == "project_not_ready"
    assert refused["error"]["details"] == {"status": status}
    assert await listing_count() == 0
    assert await event_count() == events_before


async def test_a_listed_project_cannot_be_published_twice(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    project = await listed_project(client, builder)

    again = await publish(client, builder, project, expect=409, priceMinor=1)

    assert again["error"]["code"] == "project_not_ready"
    assert again["error"]["details"] == {"status": "published"}
    assert (await listing_row(project)).price_minor == 1900


async def test_publishing_records_the_listing_and_moves_the_project_to_published(
    client: httpx.AsyncClient,
) -> None:
    builder = await signed_in(client, "builder")
    project = await ready_project(client, builder)

    listing = await publish(client, builder, project, priceMinor=2500, category="sales")

    assert await project_status(project) == "published"
    [published] = await listing_events()
    assert (published["type"], published["actor_id"], published["subject_id"]) == (
        "listing.published",
        builder.id,
        listing["id"],
    )
    assert published["payload"] == listing_payload(listing)
    assert published["payload"]["priceMinor"] == 2500
    moves = [(e["payload"]["from"], e["payload"]["to"]) for e in await events_of("project.status_changed")]
    assert moves[-1] == ("ready", "published")
    assert [(a["fromStatus"], a["toStatus"], a["actorId"]) for a in listing["audit"]] == [
        (None, "active", str(builder.id))
    ]


# --- moderation: the listing state machine ----------------------------------------------------


def edges(table: dict[ListingStatus, frozenset[ListingStatus]]) -> set[tuple[str, str]]:
    return {(source.value, target.value) for source, targets in table.items() for target in targets}


def test_code_tables_agree_with_the_spec() -> None:
    assert {s.value for s in ListingStatus} == set(LISTING_STATUSES)
    assert set(ADMIN_TRANSITIONS) == set(ListingStatus)
    assert edges(ADMIN_TRANSITIONS) == MODERATION_MOVES
    assert {s.value: p.value for s, p in PROJECT_STATUS.items()} == PROJECT_STATUS_OF
    assert {s.value: e for s, e in EVENT_OF.items()} == EVENT_OF_TARGET
    # Every move a listing makes is one the project's own state machine allows the marketplace.
    for source, target in MODERATION_MOVES:
        before, after = PROJECT_STATUS_OF[source], PROJECT_STATUS_OF[target]
        assert before == after or marketplace_may_move(ProjectStatus(before), ProjectStatus(after))


def expected_moderation(source: str, target: str) -> tuple[int, str | None]:
    if target not in MODERATION_TARGETS:
        return 422, "validation_error"  # pending_review is never a moderation target
    if (source, target) in MODERATION_MOVES:
        return 200, None
    return 409, "invalid_status_transition"  # including "to the status it already has"


async def put_listing_in(project_id: UUID, status: str) -> None:
    """Arrange: the listing and its project are in the statuses that go with ``status``."""
    async with sessionmaker()() as db:
        published_at = None if status == "pending_review" else datetime.now(UTC)
        await db.execute(
            update(Listing)
            .where(Listing.project_id == project_id)
            .values(status=status, published_at=published_at)
        )
        await db.execute(
            update(Project).where(Project.id == project_id).values(status=PROJECT_STATUS_OF[status])
        )
        await commit(db)


@pytest.mark.parametrize("source", LISTING_STATUSES)
async def test_admin_moves_a_listing_only_along_the_allowed_edges(
    client: httpx.AsyncClient, source: str
) -> None:
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    project = await listed_project(client, builder)

    outcomes: dict[str, tuple[int, str | None]] = {}
    for target in LISTING_STATUSES:
        await put_listing_in(project, source)
        events_before = await listing_events()
        reason = f"{source} to {target}"

        response = await client.put(
            f"/api/marketplace/projects/{project}/status",
            json={"status": target, "reason": reason},
            headers=admin.headers,
        )

        body = response.json()
        outcomes[target] = (response.status_code, body["error"]["code"] if "error" in body else None)
        new_events = (await listing_events())[len(events_before) :]
        row = await listing_row(project)
        if response.status_code == 200:
            assert body["status"] == row.status == target
            assert await project_status(project) == PROJECT_STATUS_OF[target]
            assert [(e["type"], e["actor_id"], e["payload"]) for e in new_events] == [
                (
                    EVENT_OF_TARGET[target],
                    admin.id,
                    listing_payload(body, **{"from": source, "reason": reason}),
                )
            ]
            assert body["audit"][-1]["fromStatus"] == source
            assert body["audit"][-1]["toStatus"] == target
            assert body["audit"][-1]["reason"] == reason
            assert body["audit"][-1]["actorId"] == str(admin.id)
            if target == "active":
                assert row.published_at is not None
        else:
            assert row.status == source, f"{source} -> {target} changed the listing"
            assert await project_status(project) == PROJECT_STATUS_OF[source]
            assert new_events == [], f"{source} -> {target} wrote an event"
        if response.status_code == 409:
            assert body["error"]["details"] == {"from": source, "to": target}

    assert outcomes == {target: expected_moderation(source, target) for target in LISTING_STATUSES}


@pytest.mark.parametrize(
    "body", [{"status": "held"}, {"status": "held", "reason": ""}, {"status": "held", "reason": "   "}]
)
async def test_moderation_requires_a_reason(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    project = await listed_project(client, builder)
    events_before = await event_count()

    response = await client.put(
        f"/api/marketplace/projects/{project}/status", json=body, headers=admin.headers
    )

    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    assert (await listing_row(project)).status == "active"
    assert await event_count() == events_before


async def test_moderating_a_project_that_is_not_listed_is_404(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    project = await ready_project(client, builder)

    refused = await moderate(client, admin, project, "held", expect=404)

    assert refused["error"]["code"] == "listing_not_found"


async def test_moderation_accepts_the_listing_id_as_well_as_the_project_id(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    project = await listed_project(client, builder)
    listing_id = (await listing_row(project)).id

    held = await moderate(client, admin, listing_id, "held")

    assert (held["id"], held["status"]) == (str(listing_id), "held")


async def test_project_status_follows_its_listing_through_a_moderation_journey(
    client: httpx.AsyncClient,
) -> None:
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    project = await ready_project(client, builder)

    seen = [await project_status(project)]
    await publish(client, builder, project)
    seen.append(await project_status(project))
    for status in ("held", "active", "delisted"):
        await moderate(client, admin, project, status)
        seen.append(await project_status(project))

    assert seen == ["ready", "published", "held", "published", "ready"]
    moves = [(e["payload"]["from"], e["payload"]["to"]) for e in await events_of("project.status_changed")]
    assert moves[-4:] == [
        ("ready", "published"),
        ("published", "held"),
        ("held", "published"),
        ("published", "ready"),
    ]


async def test_a_listed_project_cannot_be_moved_away_by_its_builder_until_delisted(
    client: httpx.AsyncClient,
) -> None:
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    project = await listed_project(client, builder)

    while_listed = await client.put(
        f"/api/projects/{project}/status", json={"status": "in_development"}, headers=builder.headers
    )
    await moderate(client, admin, project, "delisted")
    after_delisting = await client.put(
        f"/api/projects/{project}/status", json={"status": "in_development"}, headers=builder.headers
    )

    assert while_listed.status_code == 409
    assert after_delisting.status_code == 200, after_delisting.text


async def test_a_delisted_listing_is_published_again_by_its_builder(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    buyer = await signed_in(client, "end_user")
    admin = await signed_in(client, "super_admin")
    project = await listed_project(client, builder, name="Support Copilot")
    bought = await buy(client, buyer, project)
    first = await client.get(f"/api/marketplace/projects/{project}")
    await moderate(client, admin, project, "delisted", reason="Builder asked")
    assert await browse(client) == []

    again = await publish(client, builder, project, priceMinor=2900, description="Now with FAQs")

    assert (again["id"], again["status"], again["priceMinor"]) == (first.json()["id"], "active", 2900)
    assert again["description"] == "Now with FAQs"
    assert again["purchaseCount"] == 1, "sales made before delisting still count"
    assert again["publishedAt"] > first.json()["publishedAt"]
    assert [(a["fromStatus"], a["toStatus"], a["reason"]) for a in again["audit"]] == [
        (None, "active", None),
        ("active", "delisted", "Builder asked"),
        ("delisted", "active", None),
    ]
    assert await project_status(project) == "published"
    assert await browse(client) == ["Support Copilot"]
    assert [e["type"] for e in await listing_events()] == [
        "listing.published",
        "listing.delisted",
        "listing.published",
    ]
    # The first buyer still owns it, and cannot buy it twice.
    purchases = await client.get(f"/api/marketplace/purchases/user/{buyer.id}", headers=buyer.headers)
    assert [(p["id"], p["status"]) for p in purchases.json()["items"]] == [(bought["id"], "completed")]
    assert error_code_of(await buy_raw(client, buyer, project)) == "already_purchased"


async def buy_raw(client: httpx.AsyncClient, buyer: Account, project: UUID) -> httpx.Response:
    return await client.post(
        "/api/marketplace/purchase",
        json={"projectId": str(project)},
        headers={**buyer.headers, "Idempotency-Key": f"raw-{project}"},
    )


def error_code_of(response: httpx.Response) -> str:
    assert response.is_error, response.text
    return error_code(response)


# --- review before listing --------------------------------------------------------------------


@pytest.mark.parametrize("settings_changes", [{"listing_review_required": True}])
async def test_with_review_required_a_listing_waits_hidden_until_an_admin_activates_it(
    client: httpx.AsyncClient,
) -> None:
    builder = await signed_in(client, "builder")
    buyer = await signed_in(client, "end_user")
    admin = await signed_in(client, "super_admin")
    project = await ready_project(client, builder, name="Support Copilot")

    pending = await publish(client, builder, project)

    assert (pending["status"], pending["publishedAt"]) == ("pending_review", None)
    assert await project_status(project) == "ready"
    assert await browse(client) == []
    assert (await client.get(f"/api/marketplace/projects/{project}")).status_code == 404
    assert (
        await client.get(f"/api/marketplace/projects/{project}", headers=buyer.headers)
    ).status_code == 404
    owner_view = await client.get(f"/api/marketplace/projects/{project}", headers=builder.headers)
    assert owner_view.json()["status"] == "pending_review"
    assert error_code_of(await buy_raw(client, buyer, project)) == "listing_not_found"
    twice = await publish(client, builder, project, expect=409)
    assert twice["error"]["code"] == "already_listed"
    [published] = await listing_events()
    assert published["payload"] == listing_payload(pending)

    active = await moderate(client, admin, project, "active", reason="Looks good")

    assert active["status"] == "active"
    assert active["publishedAt"] is not None
    assert await project_status(project) == "published"
    assert await browse(client) == ["Support Copilot"]
    activated = (await events_of("listing.activated"))[0]
    assert activated["actor_id"] == admin.id
    assert activated["payload"] == listing_payload(
        active, **{"from": "pending_review", "reason": "Looks good"}
    )
    assert [(a["fromStatus"], a["toStatus"]) for a in active["audit"]] == [
        (None, "pending_review"),
        ("pending_review", "active"),
    ]
    await buy(client, buyer, project)


@pytest.mark.parametrize("settings_changes", [{"listing_review_required": True}])
async def test_with_review_required_an_admin_can_turn_a_listing_down(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    project = await ready_project(client, builder)
    await publish(client, builder, project)

    declined = await moderate(client, admin, project, "delisted", reason="Misleading description")

    assert declined["status"] == "delisted"
    assert await project_status(project) == "ready"
    [delisted] = await events_of("listing.delisted")
    assert delisted["payload"]["from"] == "pending_review"
    again = await publish(client, builder, project, description="Honest description")
    assert again["status"] == "pending_review"


# --- browsing ---------------------------------------------------------------------------------

# title, description, category, tags, price, currency; published in this order.
CATALOGUE: list[tuple[str, str, str, list[str], int, str]] = [
    ("Support Copilot", "Answers customer questions from your help centre.", "customer-support",
     ["helpdesk", "support"], 1900, "usd"),
    ("Sales Drafter", "Writes outreach emails and supports your sales team.", "sales",
     ["email", "outreach"], 900, "usd"),
    ("Tutor Bot", "Explains algebra step by step.", "education", ["math"], 0, "usd"),
    ("Ledger Lens", "Reads invoices and flags anomalies.", "finance", ["invoices", "support"], 4900, "eur"),
    ("Code Reviewer", "Reviews pull requests.", "developer-tools", ["code"], 2500, "usd"),
]  # fmt: skip
FIRST_BUILDER_TITLES = ["Support Copilot", "Sales Drafter", "Tutor Bot"]
# Listings that would match nearly every query if they were not hidden.
HIDDEN = ["held", "delisted", "pending_review"]


async def build_catalogue(client: httpx.AsyncClient) -> dict[str, Any]:
    """Five active listings by two builders, plus a held, a delisted and a pending one by a third
    (the free plan allows three projects per builder)."""
    ada = await signed_in(client, "builder")
    bob = await signed_in(client, "builder")
    carl = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    renamed = await client.put(f"/api/users/{ada.id}", json={"name": "Ada Builder"}, headers=ada.headers)
    assert renamed.status_code == 200, renamed.text
    projects: dict[str, UUID] = {}
    for title, description, category, tags, price, currency in CATALOGUE:
        owner = ada if title in FIRST_BUILDER_TITLES else bob
        projects[title] = await listed_project(
            client,
            owner,
            name=title,
            description=description,
            category=category,
            tags=tags,
            priceMinor=price,
            currency=currency,
        )
    for status in HIDDEN:
        project = await listed_project(
            client,
            carl,
            name=f"Support {status}",
            description="Support answers for customer support teams.",
            category="customer-support",
            tags=["support", "helpdesk"],
            priceMinor=1000,
        )
        if status == "pending_review":
            await put_listing_in(project, status)
        else:
            await moderate(client, admin, project, status)
    return {"ada": ada, "bob": bob, "carl": carl, "admin": admin, "projects": projects}


async def test_browse_filters_by_search_category_tag_price_currency_and_builder(
    client: httpx.AsyncClient,
) -> None:
    world = await build_catalogue(client)
    ada, bob = world["ada"], world["bob"]
    newest_first = [entry[0] for entry in reversed(CATALOGUE)]

    assert await browse(client) == newest_first
    # Full-text search matches word stems, in the title, category or description; and tags.
    assert set(await browse(client, "q=supporting")) == {"Support Copilot", "Sales Drafter"}
    assert set(await browse(client, "q=support")) == {"Support Copilot", "Sales Drafter", "Ledger Lens"}
    assert await browse(client, "q=explained") == ["Tutor Bot"]
    assert await browse(client, "q=anomaly") == ["Ledger Lens"]
    assert await browse(client, "q=helpdesk") == ["Support Copilot"]
    assert await browse(client, "q=nothing+matches+this") == []
    assert await browse(client, "category=sales") == ["Sales Drafter"]
    assert await browse(client, "category=legal") == []
    assert set(await browse(client, "tag=support")) == {"Support Copilot", "Ledger Lens"}
    assert set(await browse(client, "tag=SUPPORT")) == {"Support Copilot", "Ledger Lens"}
    assert await browse(client, "minPrice=900&maxPrice=2500&sort=price") == [
        "Sales Drafter",
        "Support Copilot",
        "Code Reviewer",
    ]
    assert await browse(client, "maxPrice=0") == ["Tutor Bot"]
    assert await browse(client, "minPrice=4900") == ["Ledger Lens"]
    assert await browse(client, "currency=EUR") == ["Ledger Lens"]
    assert await browse(client, f"builderId={bob.id}") == ["Code Reviewer", "Ledger Lens"]
    assert await browse(client, f"builderId={ada.id}&maxPrice=1000&sort=title") == [
        "Sales Drafter",
        "Tutor Bot",
    ]
    assert await browse(client, f"builderId={ada.id}&q=support&category=customer-support") == [
        "Support Copilot"
    ]


async def test_browse_ranks_title_matches_above_description_matches(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    await listed_project(client, builder, name="Onboarding Coach", description="Guides new hires.")
    await listed_project(client, builder, name="HR Helper", description="Answers onboarding questions.")
    await listed_project(client, builder, name="Unrelated", description="Plans trips.")

    # The description match was published last, so only relevance puts the title match first.
    assert await browse(client, "q=onboarding") == ["Onboarding Coach", "HR Helper"]
    # An explicit sort wins over relevance.
    assert await browse(client, "q=onboarding&sort=-publishedAt") == ["HR Helper", "Onboarding Coach"]


async def test_browse_never_shows_held_delisted_or_pending_listings(client: httpx.AsyncClient) -> None:
    world = await build_catalogue(client)
    queries = [
        "",
        "q=support",
        "tag=support",
        "tag=helpdesk",
        "category=customer-support",
        "minPrice=1000&maxPrice=1000",
        f"builderId={world['carl'].id}",
        "sort=title",
    ]

    for query in queries:
        for headers in ({}, world["ada"].headers, world["admin"].headers):
            titles = await browse(client, query, headers)
            assert not [t for t in titles if t.removeprefix("Support ") in HIDDEN], (query, titles)


async def test_browse_sorts_by_date_price_popularity_and_title(client: httpx.AsyncClient) -> None:
    await build_catalogue(client)
    buyers = [await signed_in(client, "end_user") for _ in range(3)]
    for buyer in buyers:
        await buy(client, buyer, await project_titled(client, "Code Reviewer"))
    await buy(client, buyers[0], await project_titled(client, "Tutor Bot"))
    oldest_first = [entry[0] for entry in CATALOGUE]

    assert await browse(client, "sort=publishedAt") == oldest_first
    assert await browse(client, "sort=-publishedAt") == oldest_first[::-1]
    by_price = [t for t, *_, price, _ in sorted(CATALOGUE, key=lambda entry: entry[4])]
    assert await browse(client, "sort=price") == by_price
    assert await browse(client, "sort=-price") == by_price[::-1]
    assert (await browse(client, "sort=-popularity"))[:2] == ["Code Reviewer", "Tutor Bot"]
    assert (await browse(client, "sort=popularity"))[-2:] == ["Tutor Bot", "Code Reviewer"]
    assert await browse(client, "sort=title") == sorted(oldest_first)
    assert await browse(client, "sort=-title") == sorted(oldest_first, reverse=True)
    refused = await client.get("/api/marketplace/projects?sort=builderId")
    assert refused.status_code == 422
    assert error_code(refused) == "invalid_sort"


async def project_titled(client: httpx.AsyncClient, title: str) -> UUID:
    response = await client.get("/api/marketplace/projects?limit=100")
    [project] = [item["projectId"] for item in response.json()["items"] if item["title"] == title]
    return UUID(project)


async def test_browse_pages_with_totals(client: httpx.AsyncClient) -> None:
    await build_catalogue(client)
    everything = await browse(client, "sort=title")

    pages = []
    for page in (1, 2, 3, 4):
        response = await client.get(f"/api/marketplace/projects?sort=title&limit=2&page={page}")
        assert response.status_code == 200
        body = response.json()
        assert body["pagination"] == {"total": 5, "page": page, "limit": 2}
        pages.append([item["title"] for item in body["items"]])

    assert pages == [everything[0:2], everything[2:4], everything[4:5], []]
    filtered = await client.get("/api/marketplace/projects?tag=support&limit=1")
    assert filtered.json()["pagination"]["total"] == 2
    assert len(filtered.json()["items"]) == 1


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "page=0", "minPrice=-1", "maxPrice=abc", "currency=dollars", "category=toys",
     "builderId=not-a-uuid", f"q={'x' * 201}"],
)  # fmt: skip
async def test_browse_refuses_bad_parameters_with_422(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/api/marketplace/projects?{query}")

    assert response.status_code == 422, response.text
    assert error_code(response) == "validation_error"


async def test_listing_detail_has_builder_name_and_purchase_count(client: httpx.AsyncClient) -> None:
    world = await build_catalogue(client)
    project = world["projects"]["Support Copilot"]
    for _ in range(2):
        await buy(client, await signed_in(client, "end_user"), project)

    response = await client.get(f"/api/marketplace/projects/{project}")

    assert response.status_code == 200
    detail = response.json()
    assert (detail["builderName"], detail["purchaseCount"]) == ("Ada Builder", 2)
    assert (detail["title"], detail["category"], detail["tags"]) == (
        "Support Copilot",
        "customer-support",
        ["helpdesk", "support"],
    )
    assert detail["audit"] == [], "the moderation trail is not public"
    by_listing_id = await client.get(f"/api/marketplace/projects/{detail['id']}")
    assert by_listing_id.json() == detail
    listed = (await client.get("/api/marketplace/projects?q=helpdesk")).json()["items"][0]
    assert (listed["builderName"], listed["purchaseCount"]) == ("Ada Builder", 2)


async def test_hold_takes_a_listing_off_the_marketplace_and_activation_brings_it_back(
    client: httpx.AsyncClient,
) -> None:
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    project = await listed_project(client, builder, name="Support Copilot")
    published_at = (await client.get(f"/api/marketplace/projects/{project}")).json()["publishedAt"]

    held = await moderate(client, admin, project, "held", reason="Reported")
    hidden = await client.get(f"/api/marketplace/projects/{project}")
    back = await moderate(client, admin, project, "active", reason="Cleared")

    assert held["status"] == "held"
    assert hidden.status_code == 404
    assert back["publishedAt"] == published_at, "reinstating keeps the original publication date"
    assert await browse(client) == ["Support Copilot"]
    moderation = [e for e in await listing_events() if e["type"] != "listing.published"]
    assert [(e["type"], e["payload"]["from"], e["payload"]["reason"]) for e in moderation] == [
        ("listing.held", "active", "Reported"),
        ("listing.activated", "held", "Cleared"),
    ]


@pytest.mark.parametrize("settings_changes", [{"listing_review_required": True}])
async def test_a_listing_under_review_is_not_activated_once_its_project_was_deleted_or_archived(
    client: httpx.AsyncClient,
) -> None:
    """A pending listing leaves its project `ready`, so the builder can still archive or delete
    it; activating the listing afterwards must not list a project that is gone."""
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    deleted = await ready_project(client, builder, name="Deleted")
    archived = await ready_project(client, builder, name="Archived")
    for project in (deleted, archived):
        await publish(client, builder, project)
        moved = await client.put(
            f"/api/projects/{project}/status", json={"status": "archived"}, headers=builder.headers
        )
        assert moved.status_code == 200, moved.text
    assert (await client.delete(f"/api/projects/{deleted}", headers=builder.headers)).status_code == 204
    events_before = await event_count()

    gone = await moderate(client, admin, deleted, "active", expect=404)
    shelved = await moderate(client, admin, archived, "active", expect=409)

    assert gone["error"]["code"] == "project_not_found"
    assert shelved["error"]["code"] == "invalid_status_transition"
    assert (await listing_row(deleted)).status == (await listing_row(archived)).status == "pending_review"
    assert await browse(client) == []
    assert await event_count() == events_before
