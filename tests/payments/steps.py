"""Steps of the Stripe journeys: what Stripe sends, what the worker does, what the database holds."""

from typing import Any
from uuid import UUID

import httpx
from procrastinate import PsycopgConnector
from sqlalchemy import select, text

from app.core.config import Settings
from app.core.db import sessionmaker
from app.models import Payment, PayoutAccount, WebhookEvent
from app.worker.queue import libpq_url, queue
from tests.factories import Account, signed_in
from tests.fakes import FakeStripe

WEBHOOK = "/api/billing/webhooks/stripe"


async def deliver(
    client: httpx.AsyncClient, fake: FakeStripe, event: dict[str, Any], *, expect: int = 200
) -> dict[str, Any]:
    """POST ``event`` to the webhook endpoint, signed the way Stripe signs it."""
    body, headers = fake.webhook_request(event)
    response = await client.post(WEBHOOK, content=body, headers=headers)
    assert response.status_code == expect, response.text
    return dict(response.json())


async def run_worker(settings: Settings, *, concurrency: int = 1) -> None:
    """The real procrastinate worker, on the test database, until the payments queue is empty."""
    connector = PsycopgConnector(conninfo=libpq_url(settings.database_url or ""))
    with queue.replace_connector(connector) as app:
        async with app.open_async():
            await app.run_worker_async(
                queues=["payments"],
                wait=False,
                listen_notify=False,
                concurrency=concurrency,
                install_signal_handlers=False,
            )


async def onboarded_builder(client: httpx.AsyncClient, fake: FakeStripe, settings: Settings) -> Account:
    """A builder who connected a Stripe account and finished onboarding (Stripe told us so)."""
    builder = await signed_in(client, "builder")
    response = await client.post("/api/payments/payout-account", headers=builder.headers)
    assert response.status_code == 201, response.text
    await deliver(client, fake, fake.complete_onboarding(response.json()["accountId"]))
    await run_worker(settings)
    return builder


def only_session(fake: FakeStripe) -> dict[str, Any]:
    assert len(fake.checkout_sessions) == 1, fake.checkout_sessions
    return next(iter(fake.checkout_sessions.values()))


async def webhook_rows() -> list[WebhookEvent]:
    async with sessionmaker()() as db:
        return list((await db.execute(select(WebhookEvent).order_by(WebhookEvent.received_at))).scalars())


async def webhook_row(event: dict[str, Any]) -> WebhookEvent:
    [row] = [r for r in await webhook_rows() if r.event_id == event["id"]]
    return row


async def job_statuses(event: dict[str, Any]) -> list[str]:
    """Statuses of the processing jobs queued for a delivered event."""
    row = await webhook_row(event)
    async with sessionmaker()() as db:
        rows = await db.execute(
            text(
                "SELECT status FROM procrastinate_jobs WHERE task_name = 'payments.process_webhook_event' "
                "AND args->>'webhook_id' = :id ORDER BY id"
            ),
            {"id": str(row.id)},
        )
        return [str(status) for status in rows.scalars()]


async def payment(payment_id: str) -> Payment:
    async with sessionmaker()() as db:
        found = await db.get(Payment, UUID(payment_id))
    assert found is not None
    return found


async def payout_accounts() -> list[PayoutAccount]:
    async with sessionmaker()() as db:
        return list((await db.execute(select(PayoutAccount))).scalars())
