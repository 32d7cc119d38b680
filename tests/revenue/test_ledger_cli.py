"""`bazaar ledger check`, run as an operator runs it: its own process, against the test database."""

from sqlalchemy import select

from app.core.db import commit, sessionmaker
from app.models import Payout, Purchase
from tests.factories import signed_in
from tests.revenue.journey import published_project, sell
from tests.test_cli import bazaar


async def test_ledger_check_passes_on_a_consistent_ledger_and_fails_with_exit_1_otherwise(
    client, database_url
):
    builder = await signed_in(client, "builder")
    await sell(client, await published_project(client, builder), 2)

    clean = bazaar(database_url, "ledger", "check")

    assert clean.returncode == 0, clean.stdout + clean.stderr
    lines = clean.stdout.splitlines()
    assert len(lines) == 5
    assert all(line.startswith("OK") for line in lines), clean.stdout

    async with sessionmaker()() as db:
        purchase = (await db.execute(select(Purchase).limit(1))).scalar_one()
        purchase.status = "refunded"  # but no refund was ever posted
        payout = Payout(
            builder_id=builder.id, amount_minor=1000, currency="usd", status="paid", provider="local"
        )
        db.add(payout)
        await commit(db)

    broken = bazaar(database_url, "ledger", "check")

    assert broken.returncode == 1, broken.stdout + broken.stderr
    failed = [line for line in broken.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 3
    assert any("refund" in line and str(purchase.id) in line for line in failed)
    assert any("provider transfer id" in line and str(payout.id) in line for line in failed)
    assert "Traceback" not in broken.stderr


def test_ledger_without_a_subcommand_shows_its_help(database_url):
    result = bazaar(database_url, "ledger")
    assert "check" in result.stdout + result.stderr
