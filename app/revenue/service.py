"""Revenue: what builders earned, what they are owed, and paying it out.

Every figure is read from the double-entry ledger (``app/revenue/ledger.py``). A builder's
**available** balance in a currency is what their payable account holds, less the shares of
sales still inside the settlement delay (the refund window):

    available = -sum(entries on builder:<id>:payable)
                - (-sum(builder_share entries of sales posted after now - delay))

"Of sales": a sale's credit and a refund of that sale wait together, judged by the sale's date.
A refund of an older sale counts at once: judged by its own date, it would leave money
available that the builder no longer has.

**Distribution** pays every available balance at or above ``payout_minimum_minor``. It runs
under one advisory lock (two runs never see the same balance twice), and each builder's payout
is its own sequence of committed transactions:

1. ``Payout`` pending + ledger ``payout`` (payable -> in transit) + ``payout.created``: committed
   *before* any money moves, so a crash afterwards still leaves a record of the attempt;
2. the provider transfer, idempotency key ``payout-<payout id>``;
3. paid: ``Payout`` paid + ledger ``payout_paid`` (in transit -> cash) + ``payout.paid``; or
   refused: ``Payout`` failed + ledger ``payout_failed`` (in transit -> payable) + ``payout.failed``,
   so the balance is whole again and the next run retries it under a new payout.

When the provider's answer is lost (network error, 5xx) the transfer may or may not have
happened: the payout stays pending, in transit, and the next run retries it first with the
same idempotency key, so the provider acts at most once.

That is why distribution opens its own sessions (``app.core.db.sessionmaker``) instead of
using the request's: the request session commits once, at the end, and a rollback there would
forget payouts whose money has already left.
"""

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.permissions import Perm
from app.core.config import Settings
from app.core.db import commit, sessionmaker
from app.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.core.events import record_event
from app.core.principal import Principal
from app.models import Payout, PayoutStatus
from app.payments.providers import PaymentProviderError, get_provider
from app.payments.service import payment_service
from app.projects.service import project_service
from app.revenue import ledger
from app.revenue.repository import SplitRow, revenue_repository
from app.revenue.schemas import (
    BalanceTotals,
    CalculateOut,
    CalculateRequest,
    DistributeOut,
    DistributeRequest,
    PayoutOut,
    PayoutTotals,
    Period,
    ProjectRevenue,
    ProjectSplitTotals,
    SalePreview,
    SeriesPoint,
    SkippedBalance,
    SkipReason,
    SplitTotals,
    UserRevenue,
    UserSeriesPoint,
)
from app.revenue.splits import simulated_processor_fee, split_sale
from app.users.service import user_service

logger = logging.getLogger("bazaar.revenue")

DISTRIBUTE_SCOPE = "revenue.distribute"
# Whose idempotency records the scheduled distribution keeps (no user runs it).
SYSTEM_USER_ID = UUID(int=0)

PAYOUT_TRANSITIONS: dict[PayoutStatus, frozenset[PayoutStatus]] = {
    PayoutStatus.PENDING: frozenset({PayoutStatus.PAID, PayoutStatus.FAILED}),
    PayoutStatus.PAID: frozenset(),
    PayoutStatus.FAILED: frozenset(),
}


class InvalidPayoutTransition(RuntimeError):
    pass


def move_payout(payout: Payout, target: PayoutStatus) -> None:
    current = PayoutStatus(payout.status)
    if target not in PAYOUT_TRANSITIONS[current]:
        raise InvalidPayoutTransition(f"a {current} payout cannot become {target}")
    payout.status = target
    payout.updated_at = datetime.now(UTC)


def _utc(moment: datetime | None) -> datetime | None:
    """Query bounds without a zone are UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _bounds(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and start >= end:
        raise ValidationFailed("from must be before to", code="invalid_period")
    return start, end


def _payout_out(payout: Payout) -> PayoutOut:
    return PayoutOut.model_validate(payout)


def _transfer_outcome_unknown(exc: PaymentProviderError) -> bool:
    """Whether a failed transfer may still have happened. A provider that refused before
    calling out (no cause) or answered 4xx did nothing; a lost connection or a 5xx might have.
    Stripe's errors carry ``http_status`` (None when no answer came)."""
    if exc.__cause__ is None:
        return False
    status = getattr(exc.__cause__, "http_status", None)
    return not (isinstance(status, int) and 400 <= status < 500 and status != 409)


# --- reports --------------------------------------------------------------------------------


def _add_split_row(totals: SplitTotals, row: SplitRow) -> None:
    amount, count = row.amount_minor, row.transactions
    if row.kind == "settlement":
        if row.leg == "gross":
            totals.gross_minor += amount
            totals.sales_count += count
        elif row.leg == "processor_fee":
            totals.processor_fee_minor -= amount
        elif row.leg == "platform_fee":
            totals.platform_fee_minor -= amount
        elif row.leg == "builder_share":
            totals.builder_share_minor -= amount
    elif row.kind == "refund":
        if row.leg == "gross":
            totals.refunds_minor -= amount
            totals.refunds_count += count
        elif row.leg == "platform_fee":
            totals.refunded_platform_fee_minor += amount
        elif row.leg == "builder_share":
            totals.refunded_builder_share_minor += amount
    totals.net_minor = totals.builder_share_minor - totals.refunded_builder_share_minor


def _split_totals(rows: list[SplitRow]) -> tuple[list[SplitTotals], list[ProjectSplitTotals]]:
    by_currency: dict[str, SplitTotals] = {}
    by_project: dict[tuple[str, str], ProjectSplitTotals] = {}
    for row in rows:
        _add_split_row(by_currency.setdefault(row.currency, SplitTotals(currency=row.currency)), row)
        if row.project_id is not None:
            key = (str(row.project_id), row.currency)
            project = by_project.setdefault(
                key, ProjectSplitTotals(project_id=row.project_id, currency=row.currency)
            )
            _add_split_row(project, row)
    return [by_currency[c] for c in sorted(by_currency)], [by_project[k] for k in sorted(by_project)]


# --- ledger invariants ----------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    failures: int = 0
    # Ids of the first offending rows (transactions, purchases or payouts).
    examples: list[str] = field(default_factory=list)

    def line(self) -> str:
        if self.ok:
            return f"OK    {self.name}"
        return f"FAIL  {self.name}: {self.failures} offending, e.g. {', '.join(self.examples)}"


LEDGER_CHECKS: list[tuple[str, Callable[[AsyncSession, int], Awaitable[tuple[int, list[str]]]]]] = [
    ("every ledger transaction sums to zero per currency", revenue_repository.unbalanced_transactions),
    (
        "every completed or refunded purchase has exactly one settlement matching its amount, "
        "gross = processor fee + platform fee + builder share",
        revenue_repository.bad_settlements,
    ),
    ("every refunded purchase has exactly one refund transaction", revenue_repository.bad_refunds),
    (
        "every payout has the ledger transactions of its status (pending: payout; paid: + payout_paid; "
        "failed: + payout_failed) moving its amount",
        revenue_repository.payouts_with_wrong_transactions,
    ),
    ("no paid payout without a provider transfer id", revenue_repository.paid_payouts_without_transfer),
]


async def check_ledger(db: AsyncSession, examples: int = 5) -> list[CheckResult]:
    """Run every ledger invariant (``bazaar ledger check``). Read-only."""
    results = []
    for name, check in LEDGER_CHECKS:
        failures, sample = await check(db, examples)
        results.append(CheckResult(name=name, ok=failures == 0, failures=failures, examples=sample))
    return results


# --- the service ----------------------------------------------------------------------------


class RevenueService:
    # --- reports ---------------------------------------------------------------------------

    async def calculate(
        self, db: AsyncSession, settings: Settings, actor: Principal, body: CalculateRequest
    ) -> CalculateOut:
        """Splits of the period from the ledger, and optionally the split of one what-if sale."""
        is_admin = actor.can(Perm.PLATFORM_ADMIN)
        if not is_admin and not actor.can(Perm.MARKETPLACE_PUBLISH):
            raise Forbidden(f"The {actor.persona} persona has no revenue", code="permission_denied")
        builder_id = body.builder_id
        if not is_admin:
            if builder_id not in (None, actor.user_id):
                raise NotFound("User not found", code="user_not_found")
            builder_id = actor.user_id
        elif builder_id is not None and await user_service.get(db, builder_id) is None:
            raise NotFound("User not found", code="user_not_found")
        if body.project_id is not None:
            await project_service.get_visible(db, actor, body.project_id)
        start, end = _utc(body.from_), _utc(body.to)
        rows = await revenue_repository.split_rows(
            db, builder_id=builder_id, project_id=body.project_id, start=start, end=end
        )
        totals, projects = _split_totals(rows)
        preview = None
        if body.price_minor is not None:
            preview = await self._preview(db, settings, builder_id, body)
        return CalculateOut(
            builder_id=builder_id,
            project_id=body.project_id,
            from_=start,
            to=end,
            totals=totals,
            projects=projects,
            preview=preview,
        )

    async def _preview(
        self, db: AsyncSession, settings: Settings, builder_id: UUID | None, body: CalculateRequest
    ) -> SalePreview:
        assert body.price_minor is not None
        fee_bps = body.platform_fee_bps
        if fee_bps is None:
            fee_bps = await self.platform_fee_bps(db, settings, builder_id)
        processor_fee = simulated_processor_fee(
            body.price_minor, settings.local_processor_fee_bps, settings.local_processor_fee_fixed_minor
        )
        split = split_sale(body.price_minor, processor_fee, fee_bps)
        return SalePreview(
            price_minor=split.gross_minor,
            currency=body.currency or "usd",
            platform_fee_bps=fee_bps,
            processor_fee_minor=split.processor_fee_minor,
            platform_fee_minor=split.platform_fee_minor,
            builder_share_minor=split.builder_share_minor,
        )

    @staticmethod
    async def platform_fee_bps(db: AsyncSession, settings: Settings, builder_id: UUID | None) -> int:
        """The builder's plan fee (limit ``platformFeeBps``), else the platform default; the
        same rule a purchase applies."""
        builder = await user_service.get(db, builder_id) if builder_id is not None else None
        limits = await user_service.plan_limits(db, builder.plan) if builder is not None else {}
        fee_bps = limits.get("platformFeeBps")
        return fee_bps if isinstance(fee_bps, int) else settings.platform_fee_bps

    async def user_revenue(
        self,
        db: AsyncSession,
        settings: Settings,
        actor: Principal,
        user_id: UUID,
        *,
        period: Period,
        start: datetime | None,
        end: datetime | None,
    ) -> UserRevenue:
        """A builder's balances now (per currency) and their activity by period."""
        await user_service.get_visible(db, actor, user_id)
        start, end = _bounds(start, end)
        cutoff = datetime.now(UTC) - timedelta(days=settings.payout_settlement_delay_days)
        totals = [
            BalanceTotals(
                currency=row.currency,
                earned_minor=row.earned_minor,
                pending_minor=row.pending_minor,
                refunded_minor=row.refunded_minor,
                paid_out_minor=row.paid_out_minor,
                in_transit_minor=row.in_transit_minor,
                available_minor=row.balance_minor - row.pending_minor,
                balance_minor=row.balance_minor,
                sales_count=row.sales_count,
                refunds_count=row.refunds_count,
            )
            for row in await revenue_repository.balances(db, user_id, cutoff)
        ]
        rows = await revenue_repository.series(db, period=period, builder_id=user_id, start=start, end=end)
        return UserRevenue(
            user_id=user_id,
            period=period,
            from_=start,
            to=end,
            totals=totals,
            series=[UserSeriesPoint.model_validate(row) for row in rows],
        )

    async def project_revenue(
        self,
        db: AsyncSession,
        actor: Principal,
        project_id: UUID,
        *,
        period: Period,
        start: datetime | None,
        end: datetime | None,
    ) -> ProjectRevenue:
        """One project's sales, fees and refunds (owner or admins; others get 404)."""
        project = await project_service.get_visible(db, actor, project_id)
        start, end = _bounds(start, end)
        rows = await revenue_repository.split_rows(
            db, builder_id=None, project_id=project_id, start=start, end=end
        )
        totals, _ = _split_totals(rows)
        series = await revenue_repository.series(
            db, period=period, project_id=project_id, start=start, end=end
        )
        return ProjectRevenue(
            project_id=project_id,
            builder_id=project.user_id,
            period=period,
            from_=start,
            to=end,
            purchases_count=await revenue_repository.purchases_count(db, project_id),
            totals=totals,
            series=[SeriesPoint.model_validate(row) for row in series],
        )

    # --- distribution ----------------------------------------------------------------------

    async def distribute(
        self, settings: Settings, *, actor_id: UUID | None, key: str, body: DistributeRequest
    ) -> tuple[DistributeOut, bool]:
        """Pay out every available balance. Returns the result and whether it is the stored
        answer to an earlier request with the same ``key`` (nothing was done this time)."""
        request_hash = hashlib.sha256(
            json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()
        owner = actor_id or SYSTEM_USER_ID
        async with revenue_repository.distribution_lock():
            async with sessionmaker()() as db:
                record = await revenue_repository.idempotency_record(db, DISTRIBUTE_SCOPE, owner, key)
            if record is not None:
                if record.request_hash != request_hash:
                    raise Conflict(
                        "This Idempotency-Key was used for another distribution",
                        code="idempotency_key_reused",
                    )
                return DistributeOut.model_validate(record.response), True
            result = await self._distribute(settings, actor_id, body)
            async with sessionmaker()() as db:
                await revenue_repository.store_idempotency_record(
                    db,
                    scope=DISTRIBUTE_SCOPE,
                    user_id=owner,
                    key=key,
                    request_hash=request_hash,
                    status_code=200,
                    response=result.model_dump(mode="json", by_alias=True),
                )
                await commit(db)
        return result, False

    async def _distribute(
        self, settings: Settings, actor_id: UUID | None, body: DistributeRequest
    ) -> DistributeOut:
        provider_name = get_provider(settings).name
        cutoff = datetime.now(UTC) - timedelta(days=settings.payout_settlement_delay_days)
        payouts: list[PayoutOut] = []
        skipped: list[SkippedBalance] = []
        # Payouts an earlier run left pending (the transfer's outcome was lost) go first, with
        # their own idempotency key: the provider sends their money at most once.
        async with sessionmaker()() as db:
            stuck = await revenue_repository.pending_payout_ids(
                db, builder_id=body.builder_id, currency=body.currency
            )
        for payout_id in stuck:
            payouts.append(await self._transfer(settings, payout_id, actor_id))

        async with sessionmaker()() as db:
            balances = await revenue_repository.available_balances(
                db, cutoff, builder_id=body.builder_id, currency=body.currency
            )
        for builder_id, currency, available in balances:
            reason: SkipReason | None = None
            if available < settings.payout_minimum_minor:
                reason = "below_minimum"
            else:
                _, reason = await self._destination(provider_name, builder_id)
            if reason is not None:
                skipped.append(
                    SkippedBalance(
                        builder_id=builder_id, currency=currency, available_minor=available, reason=reason
                    )
                )
                continue
            opened = await self._open_payout(settings, provider_name, builder_id, currency, cutoff, actor_id)
            if opened is not None:
                payouts.append(await self._transfer(settings, opened, actor_id))
        return DistributeOut(payouts=payouts, skipped=skipped, totals=self._totals(payouts))

    @staticmethod
    def _totals(payouts: list[PayoutOut]) -> list[PayoutTotals]:
        totals: dict[str, PayoutTotals] = {}
        for payout in payouts:
            line = totals.setdefault(payout.currency, PayoutTotals(currency=payout.currency))
            line.payouts += 1
            if payout.status == PayoutStatus.PAID:
                line.paid_minor += payout.amount_minor
            elif payout.status == PayoutStatus.FAILED:
                line.failed_minor += payout.amount_minor
            else:
                line.pending_minor += payout.amount_minor
        return [totals[c] for c in sorted(totals)]

    @staticmethod
    async def _destination(provider_name: str, builder_id: UUID) -> tuple[str | None, SkipReason | None]:
        """Where the provider sends a builder's money, or why it cannot. Locally: anywhere."""
        if provider_name == "local":
            return "local", None
        async with sessionmaker()() as db:
            account = await payment_service.payout_account(db, builder_id)
        if account is None or account.provider != provider_name:
            return None, "no_payout_account"
        if not account.payouts_enabled:
            return None, "payouts_not_enabled"
        return account.provider_account_id, None

    @staticmethod
    async def _open_payout(
        settings: Settings,
        provider_name: str,
        builder_id: UUID,
        currency: str,
        cutoff: datetime,
        actor_id: UUID | None,
    ) -> UUID | None:
        """Step 1, committed before any money moves. The balance is read again in this
        transaction; None when it has fallen below the minimum since (a refund)."""
        async with sessionmaker()() as db:
            amount = await revenue_repository.available_balance(db, builder_id, currency, cutoff)
            if amount < settings.payout_minimum_minor:
                return None
            payout = Payout(
                builder_id=builder_id,
                amount_minor=amount,
                currency=currency,
                status=PayoutStatus.PENDING,
                provider=provider_name,
                attempts=0,
            )
            db.add(payout)
            await db.flush()
            await ledger.post(
                db,
                kind="payout",
                reference=f"payout:{payout.id}",
                currency=currency,
                legs=ledger.payout_legs(builder_id, amount),
                actor_id=actor_id,
                builder_id=builder_id,
                memo="Payout to builder",
                details={"payoutId": str(payout.id), "provider": provider_name},
            )
            await record_event(
                db, "payout.created", actor_id=actor_id, subject_id=payout.id, payload=_payload(payout)
            )
            await commit(db)
            return payout.id

    async def _transfer(self, settings: Settings, payout_id: UUID, actor_id: UUID | None) -> PayoutOut:
        """Steps 2 and 3: ask the provider to send the money, then record what it said."""
        async with sessionmaker()() as db:
            payout = await revenue_repository.payout(db, payout_id)
        assert payout is not None
        destination, _ = await self._destination(payout.provider, payout.builder_id)
        if destination is None:
            return await self._settle(
                payout_id, actor_id, failure="The payout account cannot receive payouts"
            )
        try:
            result = await get_provider(settings, payout.provider).transfer(
                amount_minor=payout.amount_minor,
                currency=payout.currency,
                destination=destination,
                idempotency_key=f"payout-{payout.id}",
                transfer_group=f"payout-{payout.id}",
            )
        except PaymentProviderError as exc:
            if _transfer_outcome_unknown(exc):
                return await self._outcome_unknown(payout_id, str(exc))
            return await self._settle(payout_id, actor_id, failure=str(exc) or "The transfer was refused")
        except Exception as exc:
            # Not a refusal: the money may have moved. Leave it in transit for the next run.
            logger.exception("payout transfer failed unexpectedly", extra={"payoutId": str(payout_id)})
            return await self._outcome_unknown(payout_id, repr(exc))
        return await self._settle(payout_id, actor_id, transfer_id=result.transfer_id)

    @staticmethod
    async def _settle(
        payout_id: UUID,
        actor_id: UUID | None,
        *,
        transfer_id: str | None = None,
        failure: str | None = None,
    ) -> PayoutOut:
        """Paid (``transfer_id``) or failed (``failure``), with its ledger transaction and event."""
        async with sessionmaker()() as db:
            payout = await revenue_repository.payout(db, payout_id, for_update=True)
            assert payout is not None
            if payout.status != PayoutStatus.PENDING:
                return _payout_out(payout)  # settled by someone else meanwhile
            payout.attempts += 1
            reference = f"payout:{payout.id}"
            if failure is None:
                move_payout(payout, PayoutStatus.PAID)
                payout.provider_transfer_id = transfer_id
                payout.paid_at = datetime.now(UTC)
                payout.failure_reason = None
                kind, legs, event = "payout_paid", ledger.payout_paid_legs(payout.amount_minor), "payout.paid"
                extra: dict[str, Any] = {"providerTransferId": transfer_id}
            else:
                move_payout(payout, PayoutStatus.FAILED)
                payout.failure_reason = failure[:500]
                kind, event = "payout_failed", "payout.failed"
                legs = ledger.payout_failed_legs(payout.builder_id, payout.amount_minor)
                extra = {"reason": payout.failure_reason}
            await ledger.post(
                db,
                kind=kind,
                reference=reference,
                currency=payout.currency,
                legs=legs,
                actor_id=actor_id,
                builder_id=payout.builder_id,
                memo="Payout paid" if failure is None else "Payout failed: balance restored",
                details={"payoutId": str(payout.id), **extra},
            )
            await record_event(
                db,
                event,
                actor_id=actor_id,
                subject_id=payout.id,
                payload={**_payload(payout), **extra, "attempts": payout.attempts},
            )
            await db.flush()
            await commit(db)
            return _payout_out(payout)

    @staticmethod
    async def _outcome_unknown(payout_id: UUID, message: str) -> PayoutOut:
        logger.warning("payout transfer outcome unknown", extra={"payoutId": str(payout_id)})
        async with sessionmaker()() as db:
            payout = await revenue_repository.payout(db, payout_id, for_update=True)
            assert payout is not None
            if payout.status == PayoutStatus.PENDING:
                payout.attempts += 1
                payout.failure_reason = f"Transfer outcome unknown, retried next run: {message}"[:500]
                payout.updated_at = datetime.now(UTC)
            await commit(db)
            return _payout_out(payout)


def _payload(payout: Payout) -> dict[str, Any]:
    return {
        "payoutId": str(payout.id),
        "builderId": str(payout.builder_id),
        "amountMinor": payout.amount_minor,
        "currency": payout.currency,
        "provider": payout.provider,
        "status": payout.status,
    }


revenue_service = RevenueService()
