"""POST /api/revenue/distribute on the local provider, and the daily job that calls it."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from app.core.db import sessionmaker
from app.models import LedgerEntry, Payout
from app.revenue import ledger
from app.revenue.service import check_ledger
from tests.factories import events_of, signed_in
from tests.revenue.journey import SHARE_1900, distribute, published_project, sell

NO_DELAY = {"payout_settlement_delay_days": 0}


async def account_balance(account: str, currency: str = "usd") -> int:
    async with sessionmaker()() as db:
        total = await db.execute(
            select(func.coalesce(func.sum(LedgerEntry.amount_minor), 0)).where(
                LedgerEntry.account == account, LedgerEntry.currency == currency
            )
        )
    return int(total.scalar_one())


async def payouts() -> list[Payout]:
    async with sessionmaker()() as db:
        return list((await db.execute(select(Payout).order_by(Payout.created_at))).scalars())


async def assert_ledger_clean() -> None:
    async with sessionmaker()() as db:
        results = await check_ledger(db)
    assert all(r.ok for r in results), [r.line() for r in results]


async def test_shares_inside_the_settlement_delay_are_not_paid_out(client):
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    await sell(client, await published_project(client, builder), 2)

    response = await distribute(client, admin)

    assert response.status_code == 200, response.text
    assert response.json() == {"payouts": [], "skipped": [], "totals": []}
    assert await payouts() == []
    assert await account_balance(ledger.builder_payable(builder.id)) == -2 * SHARE_1900


@pytest.mark.parametrize("settings_changes", [NO_DELAY])
async def test_settled_balances_above_the_minimum_are_paid_and_the_rest_reported(client):
    rich = await signed_in(client, "builder")
    poor = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    await sell(client, await published_project(client, rich), 2)
    await sell(client, await published_project(client, poor, price=500), 1)  # share 355 < 1000

    response = await distribute(client, admin)

    assert response.status_code == 200, response.text
    body = response.json()
    [payout] = body["payouts"]
    assert payout["builderId"] == str(rich.id)
    assert payout["amountMinor"] == 2 * SHARE_1900
    assert payout["status"] == "paid"
    assert payout["provider"] == "local"
    assert payout["providerTransferId"] == f"local_tr_payout-{payout['id']}"
    assert payout["attempts"] == 1
    assert body["skipped"] == [
        {"builderId": str(poor.id), "currency": "usd", "availableMinor": 355, "reason": "below_minimum"}
    ]
    assert body["totals"] == [
        {"currency": "usd", "payouts": 1, "paidMinor": 2 * SHARE_1900, "failedMinor": 0, "pendingMinor": 0}
    ]
    assert await account_balance(ledger.builder_payable(rich.id)) == 0
    assert await account_balance(ledger.builder_payable(poor.id)) == -355
    assert await account_balance(ledger.IN_TRANSIT) == 0
    await assert_ledger_clean()

    created = await events_of("payout.created")
    paid = await events_of("payout.paid")
    assert [e["subject_id"] for e in created] == [e["subject_id"] for e in paid] == [payout["id"]]
    assert paid[0]["actor_id"] == admin.id
    assert paid[0]["payload"] == {
        "payoutId": payout["id"],
        "builderId": str(rich.id),
        "amountMinor": 2 * SHARE_1900,
        "currency": "usd",
        "provider": "local",
        "status": "paid",
        "providerTransferId": payout["providerTransferId"],
        "attempts": 1,
    }
    kinds = [e["payload"]["kind"] for e in await events_of("ledger.entry_posted")]
    assert kinds[-2:] == ["payout", "payout_paid"]


@pytest.mark.parametrize("settings_changes", [NO_DELAY])
async def test_a_retry_with_the_same_key_returns_the_first_answer_and_pays_nothing_twice(client):
    builder = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    project = await published_project(client, builder)
    await sell(client, project, 1)

    first = await distribute(client, admin, key="run-1")
    await sell(client, project, 1)  # new money after the first run
    again = await distribute(client, admin, key="run-1")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(await payouts()) == 1

    reused = await distribute(client, admin, key="run-1", currency="eur")
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"

    fresh = await distribute(client, admin, key="run-2")
    assert [p["amountMinor"] for p in fresh.json()["payouts"]] == [SHARE_1900]
    assert len(await payouts()) == 2
    await assert_ledger_clean()


@pytest.mark.parametrize("settings_changes", [NO_DELAY])
async def test_distribution_can_be_limited_to_one_builder(client):
    first = await signed_in(client, "builder")
    second = await signed_in(client, "builder")
    admin = await signed_in(client, "super_admin")
    await sell(client, await published_project(client, first), 1)
    await sell(client, await published_project(client, second), 1)

    response = await distribute(client, admin, builderId=str(second.id))

    assert [p["builderId"] for p in response.json()["payouts"]] == [str(second.id)]
    assert await account_balance(ledger.builder_payable(first.id)) == -SHARE_1900


async def test_only_admins_distribute_and_the_key_is_required(client):
    builder = await signed_in(client, "builder")
    end_user = await signed_in(client, "end_user")
    admin = await signed_in(client, "super_admin")

    for account in (builder, end_user):
        refused = await distribute(client, account)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "permission_denied"
    anonymous = await client.post("/api/revenue/distribute", headers={"Idempotency-Key": "k"})
    no_key = await client.post("/api/revenue/distribute", headers=admin.headers)

    assert anonymous.status_code == 401
    assert no_key.status_code == 422
    assert no_key.json()["error"]["code"] == "idempotency_key_required"


@pytest.mark.parametrize("settings_changes", [NO_DELAY])
async def test_the_daily_job_pays_out_once_per_day(client):
    from app.revenue.tasks import distribute_payouts

    builder = await signed_in(client, "builder")
    await sell(client, await published_project(client, builder), 1)
    now = int(datetime.now(UTC).timestamp())

    assert await distribute_payouts(timestamp=now) == 1
    await sell(client, await published_project(client, builder, name="Second"), 1)
    assert await distribute_payouts(timestamp=now) == 1  # the day's answer, replayed
    assert len(await payouts()) == 1
    [created] = await events_of("payout.created")
    assert created["actor_id"] is None


def test_the_daily_distribution_is_a_registered_periodic_job():
    from app.worker.queue import queue

    queue.perform_import_paths()
    assert "revenue.distribute_payouts" in queue.tasks
    periodic = [p.task.name for p in queue.periodic_registry.periodic_tasks.values()]
    assert "revenue.distribute_payouts" in periodic
