"""Queries over the ledger, payouts and idempotency records. Every amount is read from the
ledger (the source of truth); nothing here writes ledger entries (``ledger.post`` does)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Select, Text, and_, case, cast, func, literal, or_, select
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.core.db import get_engine
from app.models import IdempotencyRecord, LedgerEntry, LedgerTransaction, Payout, Purchase, PurchaseStatus
from app.revenue import ledger

# Any constant shared by every process: pg_advisory_xact_lock(<this>) serialises distributions.
_DISTRIBUTION_LOCK = 0x62617A61_72706179  # "bazarpay"


@dataclass(frozen=True)
class SplitRow:
    project_id: UUID | None
    currency: str
    kind: str
    leg: str
    amount_minor: int
    transactions: int


@dataclass(frozen=True)
class BalanceRow:
    currency: str
    earned_minor: int
    pending_minor: int
    refunded_minor: int
    paid_out_minor: int
    in_transit_minor: int
    balance_minor: int
    sales_count: int
    refunds_count: int


@dataclass(frozen=True)
class SeriesRow:
    period_start: datetime
    currency: str
    sales_count: int
    refunds_count: int
    gross_minor: int
    builder_share_minor: int
    refunded_builder_share_minor: int
    paid_out_minor: int


def _sum(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(LedgerEntry.amount_minor).filter(condition), 0)


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count(func.distinct(LedgerEntry.transaction_id)).filter(condition)


def _in_range(column: Any, start: datetime | None, end: datetime | None) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if start is not None:
        where.append(column >= start)
    if end is not None:
        where.append(column < end)
    return where


def _pending_share(cutoff: datetime) -> ColumnElement[bool]:
    """A ``builder_share`` entry of a sale still inside the settlement delay (the refund window):
    the sale's credit, and a refund of that sale. A refund of an older sale counts at once:
    judged by the refund's own date, it would leave money available that the builder no longer
    has, and a payout could send it."""
    sale = aliased(LedgerEntry)
    recent_sales = select(sale.purchase_id).where(
        sale.leg == "builder_share",
        sale.amount_minor < 0,
        sale.posted_at > cutoff,
        sale.purchase_id.is_not(None),
    )
    return and_(
        LedgerEntry.leg == "builder_share",
        or_(
            and_(LedgerEntry.amount_minor < 0, LedgerEntry.posted_at > cutoff),
            LedgerEntry.purchase_id.in_(recent_sales),
        ),
    )


class RevenueRepository:
    # --- reports -------------------------------------------------------------------------------

    async def split_rows(
        self,
        db: AsyncSession,
        *,
        builder_id: UUID | None,
        project_id: UUID | None,
        start: datetime | None,
        end: datetime | None,
    ) -> list[SplitRow]:
        """Sums of settlement and refund legs by project, currency, kind and leg."""
        stmt = (
            select(
                LedgerEntry.project_id,
                LedgerEntry.currency,
                LedgerTransaction.kind,
                LedgerEntry.leg,
                func.sum(LedgerEntry.amount_minor),
                func.count(func.distinct(LedgerEntry.transaction_id)),
            )
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerTransaction.kind.in_(("settlement", "refund")))
            .where(*_in_range(LedgerEntry.posted_at, start, end))
            .group_by(LedgerEntry.project_id, LedgerEntry.currency, LedgerTransaction.kind, LedgerEntry.leg)
        )
        if builder_id is not None:
            stmt = stmt.where(LedgerEntry.builder_id == builder_id)
        if project_id is not None:
            stmt = stmt.where(LedgerEntry.project_id == project_id)
        # sum(bigint) is numeric in Postgres: back to int.
        return [
            SplitRow(project, currency, kind, leg, int(amount), int(count))
            for project, currency, kind, leg, amount, count in (await db.execute(stmt)).all()
        ]

    async def balances(self, db: AsyncSession, builder_id: UUID, cutoff: datetime) -> list[BalanceRow]:
        payable = LedgerEntry.account == ledger.builder_payable(builder_id)
        in_transit = LedgerEntry.account == ledger.IN_TRANSIT
        share = and_(payable, LedgerEntry.leg == "builder_share")
        pending = _pending_share(cutoff)
        stmt = (
            select(
                LedgerEntry.currency,
                -_sum(and_(share, LedgerEntry.amount_minor < 0, ~pending)),
                -_sum(and_(payable, pending)),
                _sum(and_(share, LedgerEntry.amount_minor > 0, ~pending)),
                _sum(and_(in_transit, LedgerEntry.leg == "payout_paid")),
                -_sum(in_transit),
                -_sum(payable),
                _count(and_(LedgerEntry.leg == "gross", LedgerEntry.amount_minor > 0)),
                _count(and_(LedgerEntry.leg == "gross", LedgerEntry.amount_minor < 0)),
            )
            .where(LedgerEntry.builder_id == builder_id)
            .group_by(LedgerEntry.currency)
            .order_by(LedgerEntry.currency)
        )
        return [BalanceRow(row[0], *map(int, row[1:])) for row in (await db.execute(stmt)).all()]

    async def series(
        self,
        db: AsyncSession,
        *,
        period: str,
        builder_id: UUID | None = None,
        project_id: UUID | None = None,
        start: datetime | None,
        end: datetime | None,
    ) -> list[SeriesRow]:
        bucket = func.date_trunc(period, func.timezone("UTC", LedgerEntry.posted_at)).label("bucket")
        share = LedgerEntry.leg == "builder_share"
        gross = LedgerEntry.leg == "gross"
        stmt = (
            select(
                bucket,
                LedgerEntry.currency,
                _count(and_(gross, LedgerEntry.amount_minor > 0)),
                _count(and_(gross, LedgerEntry.amount_minor < 0)),
                _sum(and_(gross, LedgerEntry.amount_minor > 0)),
                -_sum(and_(share, LedgerEntry.amount_minor < 0)),
                _sum(and_(share, LedgerEntry.amount_minor > 0)),
                _sum(and_(LedgerEntry.account == ledger.IN_TRANSIT, LedgerEntry.leg == "payout_paid")),
            )
            .where(*_in_range(LedgerEntry.posted_at, start, end))
            .group_by(bucket, LedgerEntry.currency)
            .order_by(bucket, LedgerEntry.currency)
        )
        if builder_id is not None:
            stmt = stmt.where(LedgerEntry.builder_id == builder_id)
        if project_id is not None:
            stmt = stmt.where(LedgerEntry.project_id == project_id)
        rows = (await db.execute(stmt)).all()
        return [SeriesRow(row[0].replace(tzinfo=UTC), row[1], *map(int, row[2:])) for row in rows]

    async def purchases_count(self, db: AsyncSession, project_id: UUID) -> int:
        stmt = select(func.count()).where(
            Purchase.project_id == project_id, Purchase.status == PurchaseStatus.COMPLETED
        )
        return int((await db.execute(stmt)).scalar_one())

    # --- balances to pay out -------------------------------------------------------------------

    def _available_stmt(self, cutoff: datetime) -> Select[str, str, Any]:
        available = -func.sum(case((_pending_share(cutoff), literal(0)), else_=LedgerEntry.amount_minor))
        return (
            select(LedgerEntry.account, LedgerEntry.currency, available.label("available"))
            .group_by(LedgerEntry.account, LedgerEntry.currency)
            .order_by(LedgerEntry.account, LedgerEntry.currency)
        )

    async def available_balances(
        self, db: AsyncSession, cutoff: datetime, *, builder_id: UUID | None, currency: str | None
    ) -> list[tuple[UUID, str, int]]:
        """Every builder's positive available balance per currency: (builder, currency, amount)."""
        stmt = self._available_stmt(cutoff)
        if builder_id is not None:
            stmt = stmt.where(LedgerEntry.account == ledger.builder_payable(builder_id))
        else:
            stmt = stmt.where(LedgerEntry.account.like("builder:%:payable"))
        if currency is not None:
            stmt = stmt.where(LedgerEntry.currency == currency)
        rows = (await db.execute(stmt)).all()
        return [
            (UUID(account.split(":")[1]), cur, int(amount)) for account, cur, amount in rows if amount > 0
        ]

    async def available_balance(
        self, db: AsyncSession, builder_id: UUID, currency: str, cutoff: datetime
    ) -> int:
        rows = await self.available_balances(db, cutoff, builder_id=builder_id, currency=currency)
        return rows[0][2] if rows else 0

    @asynccontextmanager
    async def distribution_lock(self) -> AsyncIterator[None]:
        """Held while a distribution runs, so two never compute the same balances. A
        transaction-level advisory lock on its own connection: it is released when that
        transaction ends, even if the process dies."""
        async with get_engine().connect() as conn, conn.begin():
            await conn.execute(select(func.pg_advisory_xact_lock(_DISTRIBUTION_LOCK)))
            yield

    # --- payouts -------------------------------------------------------------------------------

    async def payout(self, db: AsyncSession, payout_id: UUID, *, for_update: bool = False) -> Payout | None:
        stmt = select(Payout).where(Payout.id == payout_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def pending_payout_ids(
        self, db: AsyncSession, *, builder_id: UUID | None, currency: str | None
    ) -> list[UUID]:
        stmt = select(Payout.id).where(Payout.status == "pending").order_by(Payout.created_at)
        if builder_id is not None:
            stmt = stmt.where(Payout.builder_id == builder_id)
        if currency is not None:
            stmt = stmt.where(Payout.currency == currency)
        return list((await db.execute(stmt)).scalars())

    # --- idempotency ---------------------------------------------------------------------------

    async def idempotency_record(
        self, db: AsyncSession, scope: str, user_id: UUID, key: str
    ) -> IdempotencyRecord | None:
        stmt = select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope,
            IdempotencyRecord.user_id == user_id,
            IdempotencyRecord.key == key,
        )
        return (await db.execute(stmt)).scalar_one_or_none()

    async def store_idempotency_record(
        self,
        db: AsyncSession,
        *,
        scope: str,
        user_id: UUID,
        key: str,
        request_hash: str,
        status_code: int,
        response: dict[str, Any],
    ) -> None:
        stmt = (
            insert(IdempotencyRecord)
            .values(
                scope=scope,
                user_id=user_id,
                key=key,
                request_hash=request_hash,
                status_code=status_code,
                response=response,
            )
            .on_conflict_do_nothing()
        )
        await db.execute(stmt)

    # --- invariants (bazaar ledger check) ------------------------------------------------------

    async def unbalanced_transactions(self, db: AsyncSession, limit: int) -> tuple[int, list[str]]:
        stmt = (
            select(LedgerEntry.transaction_id, LedgerEntry.currency)
            .group_by(LedgerEntry.transaction_id, LedgerEntry.currency)
            .having(func.sum(LedgerEntry.amount_minor) != 0)
        )
        return await self._sample(db, stmt, limit)

    async def bad_settlements(self, db: AsyncSession, limit: int) -> tuple[int, list[str]]:
        """Completed or refunded purchases without exactly one settlement that matches them,
        and settlements of purchases that never completed."""
        legs = self._purchase_legs("settlement")
        stmt = (
            select(Purchase.id)
            .outerjoin(legs, legs.c.reference == _purchase_reference())
            .where(Purchase.status.in_((PurchaseStatus.COMPLETED, PurchaseStatus.REFUNDED)))
            .where(
                or_(
                    func.coalesce(legs.c.transactions, 0) != 1,
                    func.coalesce(legs.c.gross, 0) != Purchase.amount_minor,
                    func.coalesce(legs.c.gross, 0)
                    != -func.coalesce(legs.c.processor_fee, 0)
                    - func.coalesce(legs.c.platform_fee, 0)
                    - func.coalesce(legs.c.builder_share, 0),
                    func.coalesce(legs.c.other, 0) != 0,
                )
            )
        )
        never_completed = self._transactions_of_purchases_not_in("settlement", ("completed", "refunded"))
        return await self._sample(db, stmt.union_all(never_completed), limit)

    async def bad_refunds(self, db: AsyncSession, limit: int) -> tuple[int, list[str]]:
        """Refunded purchases without exactly one refund transaction, and refund transactions of
        purchases that are not refunded."""
        refunds = (
            select(LedgerTransaction.reference, func.count().label("n"))
            .where(LedgerTransaction.kind == "refund")
            .group_by(LedgerTransaction.reference)
            .subquery()
        )
        stmt = (
            select(Purchase.id)
            .outerjoin(refunds, refunds.c.reference == _purchase_reference())
            .where(Purchase.status == PurchaseStatus.REFUNDED, func.coalesce(refunds.c.n, 0) != 1)
        )
        not_refunded = self._transactions_of_purchases_not_in("refund", ("refunded",))
        return await self._sample(db, stmt.union_all(not_refunded), limit)

    async def payouts_with_wrong_transactions(self, db: AsyncSession, limit: int) -> tuple[int, list[str]]:
        """Payouts whose ledger transactions do not match their status, or whose payout
        transaction does not move exactly the payout's amount into transit."""
        kinds = (
            select(
                LedgerTransaction.reference,
                func.string_agg(
                    LedgerTransaction.kind, aggregate_order_by(literal(","), LedgerTransaction.kind)
                ).label("kinds"),
            )
            .where(LedgerTransaction.kind.in_(("payout", "payout_paid", "payout_failed")))
            .group_by(LedgerTransaction.reference)
            .subquery()
        )
        moved = (
            select(LedgerTransaction.reference, func.sum(LedgerEntry.amount_minor).label("amount"))
            .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
            .where(LedgerTransaction.kind == "payout", LedgerEntry.account.like("builder:%:payable"))
            .group_by(LedgerTransaction.reference)
            .subquery()
        )
        reference = literal("payout:") + cast(Payout.id, Text)
        expected = case(
            (Payout.status == "pending", "payout"),
            (Payout.status == "paid", "payout,payout_paid"),
            else_="payout,payout_failed",
        )
        stmt = (
            select(Payout.id)
            .outerjoin(kinds, kinds.c.reference == reference)
            .outerjoin(moved, moved.c.reference == reference)
            .where(
                or_(
                    func.coalesce(kinds.c.kinds, "") != expected,
                    func.coalesce(moved.c.amount, 0) != Payout.amount_minor,
                )
            )
        )
        orphans = (
            select(LedgerTransaction.id)
            .outerjoin(Payout, literal("payout:") + cast(Payout.id, Text) == LedgerTransaction.reference)
            .where(
                LedgerTransaction.kind.in_(("payout", "payout_paid", "payout_failed")), Payout.id.is_(None)
            )
        )
        return await self._sample(db, stmt.union_all(orphans), limit)

    async def paid_payouts_without_transfer(self, db: AsyncSession, limit: int) -> tuple[int, list[str]]:
        stmt = select(Payout.id).where(
            Payout.status == "paid",
            or_(Payout.provider_transfer_id.is_(None), Payout.provider_transfer_id == ""),
        )
        return await self._sample(db, stmt, limit)

    @staticmethod
    def _purchase_legs(kind: str) -> Any:
        """Per purchase: how many ``kind`` transactions it has and the sums of their sale legs."""
        amount = LedgerEntry.amount_minor

        def leg(name: str) -> ColumnElement[int]:
            return func.sum(amount).filter(LedgerEntry.leg == name)

        entries = (
            select(
                LedgerEntry.transaction_id,
                leg("gross").label("gross"),
                leg("processor_fee").label("processor_fee"),
                leg("platform_fee").label("platform_fee"),
                leg("builder_share").label("builder_share"),
                func.sum(amount)
                .filter(LedgerEntry.leg.not_in(("gross", "processor_fee", "platform_fee", "builder_share")))
                .label("other"),
            )
            .group_by(LedgerEntry.transaction_id)
            .subquery()
        )
        return (
            select(
                LedgerTransaction.reference,
                func.count(LedgerTransaction.id).label("transactions"),
                func.sum(entries.c.gross).label("gross"),
                func.sum(entries.c.processor_fee).label("processor_fee"),
                func.sum(entries.c.platform_fee).label("platform_fee"),
                func.sum(entries.c.builder_share).label("builder_share"),
                func.sum(entries.c.other).label("other"),
            )
            .outerjoin(entries, entries.c.transaction_id == LedgerTransaction.id)
            .where(LedgerTransaction.kind == kind, LedgerTransaction.reference.like("purchase:%"))
            .group_by(LedgerTransaction.reference)
            .subquery()
        )

    @staticmethod
    def _transactions_of_purchases_not_in(kind: str, statuses: tuple[str, ...]) -> Select[UUID]:
        return (
            select(LedgerTransaction.id)
            .outerjoin(Purchase, _purchase_reference() == LedgerTransaction.reference)
            .where(LedgerTransaction.kind == kind)
            .where(or_(Purchase.id.is_(None), Purchase.status.not_in(statuses)))
        )

    @staticmethod
    async def _sample(db: AsyncSession, stmt: Any, limit: int) -> tuple[int, list[str]]:
        """How many rows ``stmt`` returns, and the first column of the first ``limit``."""
        rows = (await db.execute(stmt)).all()
        return len(rows), [str(row[0]) for row in rows[:limit]]


def _purchase_reference() -> ColumnElement[str]:
    """The ``reference`` of a purchase's settlement and refund transactions."""
    return literal("purchase:") + cast(Purchase.id, Text)


revenue_repository = RevenueRepository()
