"""Domain events become notifications: the dispatcher reads what the real API recorded (sign-ups,
moderation, sales, payouts, charges, a failing MCP client, widget quotas) and tells the right
people, once; running it again, or replaying the events, changes nothing."""

from collections import Counter
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select, text, update

from app.core.db import sessionmaker
from app.core.runtime import runtime
from app.mcp.service import mcp_service
from app.models import EmailDelivery, Notification, OutboxEvent
from app.notifications.dispatcher import Dispatcher
from app.notifications.handlers import Links
from app.payments.providers import LocalProvider, PaymentProviderError, reset_providers
from tests.billing.steps import charge
from tests.factories import PASSWORD, Account, events_of, login, signed_in
from tests.fakes.mcp_servers import McpHttpServer
from tests.marketplace import steps as market
from tests.mcp.steps import remote_client
from tests.revenue.journey import SHARE_1900, distribute
from tests.widgets.steps import generate, open_session, visitor_headers, widget_quota_of_every_plan

BASE_URL = "https://bazaar.example"
JOURNEY = {
    "listing_review_required": True,
    "payout_settlement_delay_days": 0,
    "payout_minimum_minor": 100,
    "public_base_url": BASE_URL,
    "mcp_allow_private_networks": True,
}


@pytest.fixture
def settings_changes() -> dict[str, Any]:
    return dict(JOURNEY)


@pytest.fixture(autouse=True)
def _fresh_providers() -> Iterator[None]:
    reset_providers()
    yield
    reset_providers()


# --- steps ----------------------------------------------------------------------------------------


async def dispatch_all(batch_size: int = 50) -> int:
    """Run the dispatcher's batches until no event is left unnotified; how many rows it took."""
    dispatcher = Dispatcher(sessionmaker(), Links(runtime().settings.public_base_url), batch_size)
    taken = 0
    while locked := await dispatcher.dispatch_batch():
        taken += locked
    return taken


async def inbox(user_id: UUID) -> list[Notification]:
    async with sessionmaker()() as db:
        rows = await db.scalars(
            select(Notification).where(Notification.user_id == user_id).order_by(Notification.id)
        )
        return list(rows)


async def kinds(user_id: UUID) -> Counter[str]:
    return Counter(n.type for n in await inbox(user_id))


async def one(user_id: UUID, kind: str) -> Notification:
    [notification] = [n for n in await inbox(user_id) if n.type == kind]
    return notification


async def counts() -> tuple[int, int, int]:
    """(notifications, emails, email send jobs) in the database."""
    async with sessionmaker()() as db:
        notifications = await db.scalar(select(func.count()).select_from(Notification))
        emails = await db.scalar(select(func.count()).select_from(EmailDelivery))
        jobs = await db.scalar(
            text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'notifications.send_email'")
        )
    return int(notifications or 0), int(emails or 0), int(jobs or 0)


async def unnotified() -> int:
    async with sessionmaker()() as db:
        count = await db.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.notified_at.is_(None))
        )
    return int(count or 0)


async def sign_up(client: httpx.AsyncClient, persona: str, name: str) -> Account:
    """A self sign-up through ``POST /api/users``, then a login."""
    email = f"{name.split()[0].lower()}@example.com"
    response = await client.post(
        "/api/users", json={"email": email, "password": PASSWORD, "name": name, "persona": persona}
    )
    assert response.status_code == 201, response.text
    tokens = await login(client, email)
    return Account(
        id=UUID(response.json()["id"]), email=email, persona=persona, access_token=tokens["accessToken"]
    )


def refuse_transfers(monkeypatch: pytest.MonkeyPatch, reason: str) -> None:
    """The local provider's bank refuses every transfer (the network edge, faked)."""

    async def refused(self: LocalProvider, **_: Any) -> Any:
        raise PaymentProviderError(reason)

    monkeypatch.setattr(LocalProvider, "transfer", refused)


# --- the journey ----------------------------------------------------------------------------------


async def test_a_marketplace_journey_notifies_each_person_once_with_the_right_words(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = await signed_in(client, "super_admin")
    builder = await sign_up(client, "builder", "Grace Builder")
    buyer = await sign_up(client, "end_user", "Ada Buyer")

    # Publish, approve, hold with a reason, reinstate.
    project_id = await market.ready_project(client, builder, name="Support Copilot")
    assert (await market.publish(client, builder, project_id))["status"] == "pending_review"
    await market.moderate(client, admin, project_id, "active", reason="Reviewed")
    await market.moderate(client, admin, project_id, "held", reason="Screenshots show another product")
    await market.moderate(client, admin, project_id, "active", reason="Fixed")
    # A sale on the local provider, paid out; a second one whose payout the bank refuses.
    purchase = await market.buy(client, buyer, project_id)
    assert (await distribute(client, admin)).json()["payouts"][0]["status"] == "paid"
    second_buyer = await sign_up(client, "end_user", "Linus Second")
    await market.buy(client, second_buyer, project_id)
    refuse_transfers(monkeypatch, "The receiving account is closed")
    assert (await distribute(client, admin)).json()["payouts"][0]["status"] == "failed"
    # An administrator charges the buyer.
    invoice = await charge(
        client, admin, buyer.id, items=[{"description": "Setup help", "unitAmountMinor": 4200, "quantity": 1}]
    )

    await dispatch_all()

    assert await kinds(builder.id) == {
        "welcome": 1,
        "listing.submitted": 1,
        "listing.approved": 2,
        "listing.held": 1,
        "sale.new": 2,
        "payout.sent": 1,
        "payout.failed": 1,
    }
    assert await kinds(buyer.id) == {"welcome": 1, "purchase.receipt": 1, "invoice.issued": 1}
    assert await kinds(second_buyer.id) == {"welcome": 1, "purchase.receipt": 1}
    assert await kinds(admin.id) == {"welcome": 1}

    welcome = await one(builder.id, "welcome")
    assert welcome.title == "Welcome to Bazaar, Grace Builder"
    assert f"{BASE_URL}/dashboard" in welcome.message
    submitted = await one(builder.id, "listing.submitted")
    assert submitted.title == "“Support Copilot” is waiting for review"
    held = await one(builder.id, "listing.held")
    assert held.title == "“Support Copilot” was held by a moderator"
    assert "Reason given: Screenshots show another product" in held.message
    assert held.data["projectId"] == str(project_id)
    [sale, second_sale] = [n for n in await inbox(builder.id) if n.type == "sale.new"]
    assert sale.title == "New sale: Support Copilot ($19.00)"
    assert "Ada Buyer bought Support Copilot for $19.00" in sale.message
    assert f"Your share after fees: ${SHARE_1900 / 100:.2f}." in sale.message
    assert "Linus Second bought" in second_sale.message
    sent = await one(builder.id, "payout.sent")
    assert sent.title == f"Payout sent: ${SHARE_1900 / 100:.2f}"
    failed = await one(builder.id, "payout.failed")
    assert "The receiving account is closed" in failed.message

    receipt = await one(buyer.id, "purchase.receipt")
    [purchase_invoice] = [
        e["payload"]
        for e in await events_of("invoice.issued")
        if (e["payload"]["kind"], e["payload"]["userId"]) == ("purchase", str(buyer.id))
    ]
    assert f"You paid $19.00 (invoice {purchase_invoice['number']})" in receipt.message
    assert receipt.data["purchaseId"] == purchase["id"]
    charged = await one(buyer.id, "invoice.issued")
    assert charged.title == f"Invoice {invoice['number']}: $42.00"
    assert "for Setup help" in charged.message

    # Every category defaults to email too: one queued email and one send job per notification.
    notifications, emails, jobs = await counts()
    assert notifications == emails == jobs == 15
    async with sessionmaker()() as db:
        held_mail = await db.scalar(select(EmailDelivery).where(EmailDelivery.type == "listing.held"))
    assert held_mail is not None
    assert held_mail.to_address == builder.email
    assert "Screenshots show another product" in held_mail.html_body
    assert len(await events_of("notification.sent")) == 15

    # Nothing is left, a second run finds nothing, and replaying every event changes nothing.
    assert await unnotified() == 0
    assert await dispatch_all() == 0
    async with sessionmaker()() as db:
        await db.execute(update(OutboxEvent).values(notified_at=None))
        await db.commit()
    await dispatch_all()
    assert await counts() == (15, 15, 15)
    assert len(await events_of("notification.sent")) == 15


async def test_a_failing_mcp_client_tells_every_active_super_admin(client: httpx.AsyncClient) -> None:
    admin = await signed_in(client, "super_admin")
    other_admin = await signed_in(client, "super_admin")
    suspended_admin = await signed_in(client, "super_admin")
    builder = await signed_in(client, "builder")
    response = await client.put(
        f"/api/users/{suspended_admin.id}/status", json={"status": "suspended"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    server = McpHttpServer("streamable_http", name="flaky").start()
    try:
        flaky = await remote_client(client, admin, server.url, name="Orders API")
        await mcp_service.check_health(runtime().settings)  # connects
    finally:
        server.stop()
    await mcp_service.check_health(runtime().settings)  # fails: mcp_client.health_failed

    await dispatch_all()

    for person in (admin, other_admin):
        alert = await one(person.id, "mcp_client.failing")
        assert alert.title == "MCP client “Orders API” is failing its health check"
        assert "Cannot reach the server" in alert.message
        assert alert.data["url"] == f"{BASE_URL}/dashboard/admin/mcp-clients/{flaky['id']}"
    assert "mcp_client.failing" not in await kinds(suspended_admin.id)
    assert "mcp_client.failing" not in await kinds(builder.id)


async def test_widget_quota_at_80_and_100_percent_tells_the_widget_owner(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    buyer = await signed_in(client, "end_user")
    project_id = await market.listed_project(client, builder, name="Shop Helper")
    await market.moderate(client, await signed_in(client, "super_admin"), project_id, "active")
    await market.buy(client, buyer, project_id)
    async with widget_quota_of_every_plan(5):
        widget = await generate(
            client, buyer, project_id, behaviour={"rateLimits": {"messagesPerMinutePerVisitor": 100}}
        )
        session = await open_session(client, widget)
        for n in range(5):
            response = await client.post(
                "/widget/v1/chat", json={"message": f"Question {n}"}, headers=visitor_headers(session)
            )
            assert response.status_code == 200, response.text

    await dispatch_all()

    [warning] = await events_of("widget.quota_warning")
    month = warning["payload"]["month"]
    warned = await one(buyer.id, "widget.quota_warning")
    assert warned.title.startswith("Shop Helper: 80% of ")
    assert "have sent 4 of the 5 messages" in warned.message
    reached = await one(buyer.id, "widget.quota_reached")
    assert "have sent 5 of the 5 messages" in reached.message
    assert reached.data == {
        "widgetId": widget["id"],
        "projectId": str(project_id),
        "month": month,
        "url": f"{BASE_URL}/dashboard/widgets/{widget['id']}",
    }
    assert not {"widget.quota_warning", "widget.quota_reached"} & set(await kinds(builder.id))


# --- failures -------------------------------------------------------------------------------------


async def test_an_event_whose_handler_fails_is_retried_then_set_aside_without_blocking_the_others(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await signed_in(client, "builder")
    second = await signed_in(client, "builder")
    from app.notifications import handlers

    real = handlers.HANDLERS["user.created"]

    async def broken_for_first(db: Any, event: handlers.Event, links: Links) -> Any:
        if event.subject_id == str(first.id):
            raise RuntimeError("a payload nobody expected")
        return await real(db, event, links)

    monkeypatch.setitem(handlers.HANDLERS, "user.created", broken_for_first)
    dispatcher = Dispatcher(sessionmaker(), Links(BASE_URL), batch_size=50, max_attempts=3)

    await dispatcher.dispatch_batch()

    assert await kinds(first.id) == {}
    assert await kinds(second.id) == {"welcome": 1}  # not held up by the first
    assert await unnotified() >= 1  # the first's user.created, kept for another try
    await dispatcher.dispatch_batch()
    await dispatcher.dispatch_batch()  # the third failure: set aside
    assert await dispatcher.dispatch_batch() == 0
    assert await unnotified() == 0
    assert await kinds(first.id) == {}
    assert await counts() == (1, 1, 1)


@pytest.mark.parametrize("settings_changes", [{**JOURNEY, "listing_review_required": False}])
async def test_publishing_without_review_tells_the_builder_it_is_live_and_a_delisting_why(
    client: httpx.AsyncClient,
) -> None:
    admin = await signed_in(client, "super_admin")
    builder = await sign_up(client, "builder", "Grace Builder")
    project_id = await market.ready_project(client, builder, name="Sales Scout")
    assert (await market.publish(client, builder, project_id))["status"] == "active"
    await market.moderate(client, admin, project_id, "delisted", reason="Trademark complaint")

    await dispatch_all()

    assert await kinds(builder.id) == {"welcome": 1, "listing.live": 1, "listing.delisted": 1}
    live = await one(builder.id, "listing.live")
    assert live.title == "“Sales Scout” is live on the marketplace"
    assert live.data["url"] == f"{BASE_URL}/marketplace/{project_id}"
    delisted = await one(builder.id, "listing.delisted")
    assert delisted.title == "“Sales Scout” was removed from the marketplace"
    assert "Reason given: Trademark complaint" in delisted.message
    assert delisted.data["reason"] == "Trademark complaint"
