"""The webhook endpoint takes only what Stripe signed, stores it once, and answers at once."""

import json
import time

import pytest

from tests.fakes import sign_webhook
from tests.matrix import event_count
from tests.payments.steps import WEBHOOK, deliver, webhook_rows


def account_event(fake):
    return fake.event("account.updated", {"id": "acct_unknown", "object": "account", "payouts_enabled": True})


def wrong_secret(fake, event):
    return fake.webhook_request(event, secret="whsec_someone_else")


def tampered_body(fake, event):
    body, headers = fake.webhook_request(event)
    return body.replace(b'"payouts_enabled": true', b'"payouts_enabled": false'), headers


def missing_header(fake, event):
    body, headers = fake.webhook_request(event)
    del headers["Stripe-Signature"]
    return body, headers


def too_old(fake, event):
    return fake.webhook_request(event, timestamp=int(time.time()) - 3600)  # a captured request replayed


def garbage_header(fake, event):
    body, headers = fake.webhook_request(event)
    return body, {**headers, "Stripe-Signature": "not a signature"}


@pytest.mark.parametrize("forge", [wrong_secret, tampered_body, missing_header, too_old, garbage_header])
async def test_a_request_stripe_did_not_sign_is_refused_and_nothing_is_stored(client, fake, forge):
    before = await event_count()
    body, headers = forge(fake, account_event(fake))

    response = await client.post(WEBHOOK, content=body, headers=headers)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_signature"
    assert await webhook_rows() == []
    assert await event_count() == before


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "invalid_payload"),
        (b"[]", "invalid_payload"),
        (json.dumps({"type": "account.updated"}).encode(), "invalid_payload"),
        (json.dumps({"id": "evt_1"}).encode(), "invalid_payload"),
        (b"\xff\xfe", "invalid_signature"),  # not UTF-8: Stripe never signs that
    ],
)
async def test_a_signed_body_that_is_not_an_event_is_refused(client, fake, body, code):
    signature = sign_webhook(body, fake.webhook_secret)

    response = await client.post(WEBHOOK, content=body, headers={"Stripe-Signature": signature})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert await webhook_rows() == []


async def test_an_event_is_stored_once_by_its_id(client, fake):
    event = account_event(fake)

    assert await deliver(client, fake, event) == {"received": True, "duplicate": False}
    assert await deliver(client, fake, event) == {"received": True, "duplicate": True}

    [row] = await webhook_rows()
    assert (row.provider, row.event_id, row.type) == ("stripe", event["id"], "account.updated")
    assert row.payload == event
    assert (row.processed_at, row.attempts) == (None, 0)


@pytest.mark.parametrize("settings_changes", [{"payment_provider": "local"}])
async def test_without_a_webhook_secret_the_endpoint_is_unavailable(client):
    body = b'{"id": "evt_1", "type": "account.updated"}'
    headers = {"Stripe-Signature": sign_webhook(body, "whsec_anything")}

    response = await client.post(WEBHOOK, content=body, headers=headers)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "webhooks_not_configured"
    assert await webhook_rows() == []


def test_the_worker_runs_webhook_jobs_and_sweeps_every_minute():
    from app.payments.service import payment_service
    from app.worker.queue import queue

    queue.perform_import_paths()
    assert "payments.process_webhook_event" in queue.tasks
    periodic = {p.task.name: p.cron for p in queue.periodic_registry.periodic_tasks.values()}
    assert periodic["payments.process_pending_webhooks"] == "* * * * *"
    assert "purchase" in payment_service.on_succeeded  # the worker knows what a paid purchase means
