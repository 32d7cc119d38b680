from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Integer, cast, func, or_, select, update
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Payment, PayoutAccount, WebhookEvent

# A failing event is retried by the minutely sweeper after 0, 1, 3, 7, 15... minutes (capped at
# six hours), for about three days; then it waits for a person (``attempts`` reset to 0).
MAX_WEBHOOK_ATTEMPTS = 20
_MAX_RETRY_DELAY_MINUTES = 6 * 60


def retry_delay(attempts: Any) -> Any:
    """SQL interval to wait after the ``attempts``-th failed attempt: 2^(attempts-1) - 1 minutes."""
    minutes = func.least(func.power(2, attempts - 1) - 1, _MAX_RETRY_DELAY_MINUTES)
    return func.make_interval(0, 0, 0, 0, 0, cast(minutes, Integer))


class PaymentRepository:
    async def get(self, db: AsyncSession, payment_id: UUID, *, for_update: bool = False) -> Payment | None:
        stmt = select(Payment).where(Payment.id == payment_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def by_provider_ref(self, db: AsyncSession, provider: str, ref: str) -> Payment | None:
        stmt = (
            select(Payment).where(Payment.provider == provider, Payment.provider_ref == ref).with_for_update()
        )
        return (await db.execute(stmt)).scalar_one_or_none()

    async def by_payment_intent(self, db: AsyncSession, payment_intent: str) -> Payment | None:
        stmt = select(Payment).where(Payment.provider_payment_intent == payment_intent).with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def for_purchase(self, db: AsyncSession, purchase_id: UUID) -> Payment | None:
        stmt = select(Payment).where(Payment.purchase_id == purchase_id).order_by(Payment.created_at.desc())
        return (await db.execute(stmt.limit(1))).scalar_one_or_none()

    async def latest_for_purchases(self, db: AsyncSession, purchase_ids: list[UUID]) -> dict[UUID, Payment]:
        """The newest payment of each purchase, in one query."""
        if not purchase_ids:
            return {}
        stmt = (
            select(Payment)
            .where(Payment.purchase_id.in_(purchase_ids))
            .order_by(Payment.purchase_id, Payment.created_at.desc())
            .ext(distinct_on(Payment.purchase_id))
        )
        return {p.purchase_id: p for p in (await db.execute(stmt)).scalars() if p.purchase_id is not None}

    async def for_invoice(self, db: AsyncSession, invoice_id: UUID) -> Payment | None:
        stmt = select(Payment).where(Payment.invoice_id == invoice_id).order_by(Payment.created_at.desc())
        return (await db.execute(stmt.limit(1))).scalar_one_or_none()

    async def store_webhook(
        self, db: AsyncSession, provider: str, event_id: str, type_: str, payload: dict[str, Any]
    ) -> UUID | None:
        """Insert unless already stored; the id of the new row, or None for a duplicate."""
        stmt = (
            insert(WebhookEvent)
            .values(provider=provider, event_id=event_id, type=type_, payload=payload)
            .on_conflict_do_nothing(constraint="uq_webhook_events_provider_event_id")
            .returning(WebhookEvent.id)
        )
        return (await db.execute(stmt)).scalar_one_or_none()

    async def webhook_for_update(self, db: AsyncSession, webhook_id: UUID) -> WebhookEvent | None:
        stmt = select(WebhookEvent).where(WebhookEvent.id == webhook_id).with_for_update(skip_locked=True)
        return (await db.execute(stmt)).scalar_one_or_none()

    async def unprocessed_webhook_ids(self, db: AsyncSession, limit: int = 100) -> list[UUID]:
        stmt = (
            select(WebhookEvent.id)
            .where(
                WebhookEvent.processed_at.is_(None),
                WebhookEvent.attempts < MAX_WEBHOOK_ATTEMPTS,
                or_(WebhookEvent.next_attempt_at.is_(None), WebhookEvent.next_attempt_at <= func.now()),
            )
            .order_by(WebhookEvent.received_at)
            .limit(limit)
        )
        return list((await db.execute(stmt)).scalars())

    async def finish_webhook(
        self, db: AsyncSession, webhook_id: UUID, *, error: str | None, done: bool
    ) -> None:
        """Count a processing attempt; ``done`` marks the event processed (``error`` says why it
        was rejected, if it was), otherwise ``error`` is why this attempt failed."""
        await db.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == webhook_id)
            .values(
                attempts=WebhookEvent.attempts + 1,
                last_error=error,
                processed_at=datetime.now(UTC) if done else None,
                next_attempt_at=None if done else func.now() + retry_delay(WebhookEvent.attempts + 1),
            )
        )

    async def newer_webhook_applied(
        self, db: AsyncSession, webhook: WebhookEvent, object_id: str, created: int
    ) -> bool:
        """Whether an event of the same type about the same object, created later than
        ``created``, was already processed (this one is stale)."""
        payload = WebhookEvent.payload
        stmt = select(WebhookEvent.id).where(
            WebhookEvent.provider == webhook.provider,
            WebhookEvent.type == webhook.type,
            WebhookEvent.id != webhook.id,
            WebhookEvent.processed_at.is_not(None),
            payload["data"]["object"]["id"].astext == object_id,
            payload["created"].astext.cast(BigInteger) > created,
        )
        return (await db.execute(stmt.limit(1))).first() is not None

    async def payout_account(self, db: AsyncSession, user_id: UUID) -> PayoutAccount | None:
        return (
            await db.execute(select(PayoutAccount).where(PayoutAccount.user_id == user_id))
        ).scalar_one_or_none()

    async def insert_payout_account_unless_exists(
        self, db: AsyncSession, values: dict[str, Any]
    ) -> UUID | None:
        """Insert the user's payout account; None when they already have one (a concurrent request)."""
        stmt = (
            insert(PayoutAccount)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[PayoutAccount.user_id])
            .returning(PayoutAccount.id)
        )
        return (await db.execute(stmt)).scalar_one_or_none()

    async def payout_account_by_provider_id(self, db: AsyncSession, account_id: str) -> PayoutAccount | None:
        stmt = select(PayoutAccount).where(PayoutAccount.provider_account_id == account_id).with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()


payment_repository = PaymentRepository()
