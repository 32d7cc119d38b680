"""The ledger defends itself (Postgres refuses unbalanced or edited entries) and
``check_ledger`` finds every broken invariant."""

from uuid import UUID

import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError

from app.core.db import commit, sessionmaker
from app.models import LedgerEntry, LedgerTransaction, Payout, PayoutStatus, Purchase
from app.revenue import ledger
from app.revenue.service import PAYOUT_TRANSITIONS, InvalidPayoutTransition, check_ledger, move_payout
from tests.factories import signed_in
from tests.revenue.journey import published_project, sell


async def test_postgres_refuses_to_commit_an_unbalanced_transaction(app):
    async with sessionmaker()() as db:
        transaction = LedgerTransaction(kind="test", reference="unbalanced")
        db.add(transaction)
        await db.flush()
        db.add_all(
            [
                LedgerEntry(transaction_id=transaction.id, account=ledger.CASH, leg="gross", amount_minor=100,
                            currency="usd"),
                LedgerEntry(transaction_id=transaction.id, account=ledger.REVENUE, leg="platform_fee",
                            amount_minor=-99, currency="usd"),
            ]
        )  # fmt: skip
        await db.flush()  # the check is deferred: the insert itself goes through
        with pytest.raises(DBAPIError, match="does not balance"):
            await db.commit()
    async with sessionmaker()() as db:
        assert (await db.execute(select(LedgerTransaction))).first() is None


async def test_balanced_per_currency_means_each_currency_on_its_own(app):
    async with sessionmaker()() as db:
        transaction = LedgerTransaction(kind="test", reference="two-currencies")
        db.add(transaction)
        await db.flush()
        for amount, currency in ((100, "usd"), (-100, "eur")):
            db.add(LedgerEntry(transaction_id=transaction.id, account=ledger.CASH, leg="gross",
                               amount_minor=amount, currency=currency))  # fmt: skip
        with pytest.raises(DBAPIError, match="does not balance"):
            await db.commit()


async def test_posted_entries_cannot_be_changed_or_deleted(client):
    builder = await signed_in(client, "builder")
    await sell(client, await published_project(client, builder), 1)

    for statement in (
        update(LedgerEntry).values(amount_minor=LedgerEntry.amount_minor * 2),
        update(LedgerEntry).values(account="platform:elsewhere"),
        delete(LedgerEntry),
    ):
        async with sessionmaker()() as db:
            with pytest.raises(DBAPIError, match="cannot be changed or deleted"):
                await db.execute(statement)
            await db.rollback()


async def test_post_refuses_an_unbalanced_transaction_before_the_database_does(app):
    async with sessionmaker()() as db:
        with pytest.raises(ledger.UnbalancedTransaction):
            await ledger.post(
                db,
                kind="test",
                reference="x",
                currency="usd",
                legs=[ledger.Leg(ledger.CASH, "gross", 10)],
                actor_id=None,
            )


async def test_a_clean_ledger_passes_every_check(client):
    builder = await signed_in(client, "builder")
    await sell(client, await published_project(client, builder), 2)
    await sell(client, await published_project(client, builder, price=0, name="Free"), 1)

    async with sessionmaker()() as db:
        results = await check_ledger(db)

    assert len(results) == 5
    assert all(r.ok for r in results), [r.line() for r in results]
    assert all(r.line().startswith("OK") for r in results)


async def test_checks_find_an_unbalanced_transaction_a_purchase_off_its_settlement_and_a_missing_refund(
    client,
):
    builder = await signed_in(client, "builder")
    first, second = await sell(client, await published_project(client, builder), 2)

    async with sessionmaker()() as db:
        # All inside one transaction that is never committed (the trigger would refuse it).
        transaction = LedgerTransaction(kind="test", reference="unbalanced")
        db.add(transaction)
        await db.flush()
        db.add(LedgerEntry(transaction_id=transaction.id, account=ledger.CASH, leg="gross", amount_minor=5,
                           currency="usd"))  # fmt: skip
        await db.execute(update(Purchase).where(Purchase.id == first["id"]).values(amount_minor=2000))
        await db.execute(update(Purchase).where(Purchase.id == second["id"]).values(status="refunded"))
        await db.flush()
        results = {r.name: r for r in await check_ledger(db)}
        await db.rollback()

    unbalanced, settlement, refunds, payout_kinds, transfers = results.values()
    assert not unbalanced.ok
    assert unbalanced.examples == [str(transaction.id)]
    assert not settlement.ok
    assert settlement.examples == [first["id"]]
    assert not refunds.ok
    assert refunds.examples == [second["id"]]
    assert payout_kinds.ok
    assert transfers.ok
    assert "FAIL" in settlement.line()
    assert first["id"] in settlement.line()


async def test_checks_find_a_payout_without_ledger_transactions_or_transfer(client):
    builder = await signed_in(client, "builder")
    async with sessionmaker()() as db:
        payout = Payout(
            builder_id=builder.id, amount_minor=1000, currency="usd", status="paid", provider="local"
        )
        db.add(payout)
        await commit(db)

    async with sessionmaker()() as db:
        results = await check_ledger(db)

    assert [r.ok for r in results] == [True, True, True, False, False]
    assert results[3].examples == results[4].examples == [str(payout.id)]


async def test_checks_find_a_payout_transaction_without_its_payout(app):
    builder_id = UUID(int=7)
    async with sessionmaker()() as db:
        await ledger.post(
            db,
            kind="payout",
            reference=f"payout:{UUID(int=8)}",
            currency="usd",
            legs=ledger.payout_legs(builder_id, 500),
            actor_id=None,
            builder_id=builder_id,
        )
        await commit(db)

    async with sessionmaker()() as db:
        results = await check_ledger(db)

    assert not results[3].ok


@pytest.mark.parametrize("current", list(PayoutStatus))
@pytest.mark.parametrize("target", list(PayoutStatus))
def test_payout_state_machine(current, target):
    payout = Payout(status=current)
    allowed = (current, target) in {
        (PayoutStatus.PENDING, PayoutStatus.PAID),
        (PayoutStatus.PENDING, PayoutStatus.FAILED),
    }
    assert (target in PAYOUT_TRANSITIONS[current]) == allowed
    if allowed:
        move_payout(payout, target)
        assert payout.status == target
    else:
        with pytest.raises(InvalidPayoutTransition):
            move_payout(payout, target)
        assert payout.status == current
