"""Builders' payout accounts: a Stripe Connect Express account, enabled by Stripe's webhook."""

import asyncio

import pytest

from tests.factories import events_of, signed_in
from tests.marketplace.steps import publish, ready_project
from tests.payments.steps import deliver, payout_accounts, run_worker

ACCOUNT = "/api/payments/payout-account"


async def test_builder_connects_a_stripe_express_account_and_finishing_onboarding_enables_payouts(
    client, fake, settings
):
    builder = await signed_in(client, "builder")
    missing = await client.get(ACCOUNT, headers=builder.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "payout_account_not_found"

    created = await client.post(ACCOUNT, headers=builder.headers)

    assert created.status_code == 201, created.text
    body = created.json()
    [account] = fake.accounts.values()
    assert body["accountId"] == account["id"]
    assert (account["type"], account["email"]) == ("express", builder.email)
    assert account["capabilities"] == {"transfers": "inactive"}
    [request] = [r for r in fake.requests if r.path == "/v1/accounts"]
    assert request.idempotency_key == f"payout-account-{builder.id}"
    assert body["onboardingUrl"] == fake.account_links[-1]["url"]
    assert fake.account_links[-1]["type"] == "account_onboarding"
    assert (body["status"], body["payoutsEnabled"], body["detailsSubmitted"]) == ("pending", False, False)

    again = await client.post(ACCOUNT, headers=builder.headers)  # back for a fresh link
    assert again.status_code == 200
    assert again.json()["accountId"] == account["id"]
    assert len(fake.accounts) == 1
    assert len(fake.account_links) == 2

    onboarded = fake.complete_onboarding(account["id"])
    await deliver(client, fake, onboarded)
    await run_worker(settings)
    await deliver(client, fake, onboarded)  # redelivered
    await run_worker(settings)

    mine = (await client.get(ACCOUNT, headers=builder.headers)).json()
    assert (mine["status"], mine["payoutsEnabled"], mine["detailsSubmitted"]) == ("enabled", True, True)
    assert mine["onboardingUrl"] is None
    assert (await client.post(ACCOUNT, headers=builder.headers)).json()["onboardingUrl"] is None
    [created_event] = await events_of("payout_account.created")
    assert created_event["payload"]["providerAccountId"] == account["id"]
    assert created_event["actor_id"] == builder.id
    [updated_event] = await events_of("payout_account.updated")
    assert updated_event["payload"]["status"] == "enabled"
    assert updated_event["payload"]["previousStatus"] == "pending"


async def test_an_older_account_update_arriving_late_does_not_undo_a_newer_one(client, fake, settings):
    builder = await signed_in(client, "builder")
    account_id = (await client.post(ACCOUNT, headers=builder.headers)).json()["accountId"]
    details_only = fake.event("account.updated", {**fake.accounts[account_id], "details_submitted": True})
    enabled = fake.complete_onboarding(account_id)
    details_only["created"] = enabled["created"] - 5  # Stripe does not promise delivery order

    await deliver(client, fake, enabled)
    await run_worker(settings)
    await deliver(client, fake, details_only)
    await run_worker(settings)

    mine = (await client.get(ACCOUNT, headers=builder.headers)).json()
    assert (mine["status"], mine["payoutsEnabled"]) == ("enabled", True)
    assert len(await events_of("payout_account.updated")) == 1


async def test_payouts_stay_off_until_stripe_activates_transfers(client, fake, settings):
    builder = await signed_in(client, "builder")
    account_id = (await client.post(ACCOUNT, headers=builder.headers)).json()["accountId"]
    submitted = {**fake.accounts[account_id], "details_submitted": True, "payouts_enabled": True}
    submitted["capabilities"] = {"transfers": "pending"}

    await deliver(client, fake, fake.event("account.updated", submitted))
    await run_worker(settings)

    mine = (await client.get(ACCOUNT, headers=builder.headers)).json()
    assert (mine["status"], mine["payoutsEnabled"], mine["detailsSubmitted"]) == ("restricted", False, True)


async def test_a_paid_listing_on_stripe_needs_finished_onboarding(client, fake, settings):
    builder = await signed_in(client, "builder")
    project_id = await ready_project(client, builder)
    refused = await publish(client, builder, project_id, expect=409)
    assert refused["error"]["code"] == "payout_account_required"

    account_id = (await client.post(ACCOUNT, headers=builder.headers)).json()["accountId"]
    still_refused = await publish(client, builder, project_id, expect=409)
    assert still_refused["error"]["code"] == "payout_account_required"

    await deliver(client, fake, fake.complete_onboarding(account_id))
    await run_worker(settings)
    listed = await publish(client, builder, project_id, expect=201)
    assert listed["status"] == "active"


async def test_only_builders_connect_payout_accounts(client, fake):
    buyer = await signed_in(client, "end_user")
    response = await client.post(ACCOUNT, headers=buyer.headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert (await client.post(ACCOUNT)).status_code == 401
    assert (await client.get(ACCOUNT)).status_code == 401
    assert fake.accounts == {}
    assert await payout_accounts() == []


async def test_stripe_refusing_the_account_is_a_503_and_stores_nothing(client, fake):
    builder = await signed_in(client, "builder")
    fake.api_key = "sk_test_rotated"
    try:
        response = await client.post(ACCOUNT, headers=builder.headers)
    finally:
        fake.api_key = "sk_test_fake"
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "payment_provider_error"
    assert await payout_accounts() == []
    assert await events_of("payout_account.") == []


@pytest.mark.parametrize("settings_changes", [{"payment_provider": "local"}])
async def test_with_the_local_provider_the_account_is_ready_at_once(client):
    builder = await signed_in(client, "builder")

    response = await client.post(ACCOUNT, headers=builder.headers)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["provider"] == "local"
    assert (body["status"], body["payoutsEnabled"], body["onboardingUrl"]) == ("enabled", True, None)
    assert (await client.get(ACCOUNT, headers=builder.headers)).json()["accountId"] == body["accountId"]


async def test_two_connect_requests_at_once_make_one_account(client, fake):
    builder = await signed_in(client, "builder")

    responses = await asyncio.gather(*(client.post(ACCOUNT, headers=builder.headers) for _ in range(2)))

    assert sorted(r.status_code for r in responses) == [200, 201]
    assert len({r.json()["accountId"] for r in responses}) == 1
    assert len(fake.accounts) == 1
    assert len(await payout_accounts()) == 1
    assert len(await events_of("payout_account.created")) == 1
