"""Payments: asking a provider for money, recording the outcome, telling whoever asked.

What a successful payment means belongs to the domain that asked for it (a purchase to the
marketplace, an invoice to billing). Those domains register ``on_succeeded`` / ``on_failed``
callbacks by payment kind, so this domain never imports them.

Builders' payout accounts live here too: the provider account their share is transferred to.
Its state comes from the provider (Stripe's ``account.updated`` webhook, see ``webhooks.py``).
"""

import enum
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.errors import ServiceUnavailable
from app.core.events import record_event
from app.models import Payment, PaymentStatus, PayoutAccount
from app.payments.providers import CheckoutRequest, PaymentProviderError, get_provider
from app.payments.repository import payment_repository

T = TypeVar("T")

PaymentCallback = Callable[[AsyncSession, Payment], Awaitable[None]]


class PayoutAccountStatus(enum.StrEnum):
    PENDING = "pending"  # onboarding not finished
    RESTRICTED = "restricted"  # details submitted, but the provider does not allow payouts (yet)
    ENABLED = "enabled"


def payout_account_status(*, details_submitted: bool, payouts_enabled: bool) -> str:
    if payouts_enabled:
        return PayoutAccountStatus.ENABLED
    return PayoutAccountStatus.RESTRICTED if details_submitted else PayoutAccountStatus.PENDING


def payment_kind(payment: Payment) -> str:
    return "purchase" if payment.purchase_id is not None else "invoice"


async def _provider_call(call: Awaitable[T]) -> T:
    """A refusal or outage of the provider is a 503 for the caller, and the request's
    transaction (the purchase, the invoice) rolls back with it."""
    try:
        return await call
    except PaymentProviderError as exc:
        raise ServiceUnavailable(
            f"The payment provider did not accept the request: {exc}", code="payment_provider_error"
        ) from exc


class PaymentService:
    def __init__(self) -> None:
        self.on_succeeded: dict[str, PaymentCallback] = {}
        self.on_failed: dict[str, PaymentCallback] = {}

    async def start(
        self,
        db: AsyncSession,
        settings: Settings,
        *,
        user_id: UUID,
        amount_minor: int,
        currency: str,
        description: str,
        customer_email: str,
        purchase_id: UUID | None = None,
        invoice_id: UUID | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Payment:
        """Create the payment and start it with the configured provider. The local provider (and
        any free amount) settles before this returns."""
        provider = get_provider(settings)
        payment = Payment(
            user_id=user_id,
            purchase_id=purchase_id,
            invoice_id=invoice_id,
            provider=provider.name if amount_minor > 0 else "local",
            amount_minor=amount_minor,
            currency=currency,
            status=PaymentStatus.PENDING,
        )
        db.add(payment)
        await db.flush()
        if amount_minor == 0:
            payment.provider_ref = f"free_{payment.id}"
            await self.mark_succeeded(db, payment, processor_fee_minor=0)
            return payment
        base = settings.public_base_url.rstrip("/")
        started = await _provider_call(
            provider.start_checkout(
                CheckoutRequest(
                    payment_id=str(payment.id),
                    amount_minor=amount_minor,
                    currency=currency,
                    description=description,
                    customer_email=customer_email,
                    success_url=f"{base}/payments/{payment.id}/done",
                    cancel_url=f"{base}/payments/{payment.id}/cancelled",
                    transfer_group=f"payment-{payment.id}",
                    metadata={"payment_id": str(payment.id), **(metadata or {})},
                ),
                idempotency_key=f"payment-{payment.id}",
            )
        )
        payment.provider_ref = started.provider_ref
        payment.checkout_url = started.checkout_url
        payment.provider_payment_intent = started.payment_intent
        await db.flush()
        if started.settled_fee_minor is not None:
            await self.mark_succeeded(db, payment, processor_fee_minor=started.settled_fee_minor)
        return payment

    async def mark_succeeded(
        self,
        db: AsyncSession,
        payment: Payment,
        *,
        processor_fee_minor: int,
        payment_intent: str | None = None,
    ) -> bool:
        """Record the money as received, once. Returns False when it already was."""
        if payment.status != PaymentStatus.PENDING:
            return False
        payment.status = PaymentStatus.SUCCEEDED
        payment.processor_fee_minor = processor_fee_minor
        payment.succeeded_at = datetime.now(UTC)
        if payment_intent:
            payment.provider_payment_intent = payment_intent
        await record_event(
            db,
            "payment.succeeded",
            actor_id=payment.user_id,
            subject_id=payment.id,
            payload=self._payload(payment),
        )
        await db.flush()
        callback = self.on_succeeded.get(payment_kind(payment))
        if callback is not None:
            await callback(db, payment)
        return True

    async def mark_failed(self, db: AsyncSession, payment: Payment, *, reason: str) -> bool:
        if payment.status != PaymentStatus.PENDING:
            return False
        payment.status = PaymentStatus.FAILED
        payment.failure_reason = reason[:1000]
        await record_event(
            db,
            "payment.failed",
            actor_id=payment.user_id,
            subject_id=payment.id,
            payload={**self._payload(payment), "reason": payment.failure_reason},
        )
        await db.flush()
        callback = self.on_failed.get(payment_kind(payment))
        if callback is not None:
            await callback(db, payment)
        return True

    async def refund(self, db: AsyncSession, settings: Settings, payment: Payment, *, actor_id: UUID) -> None:
        if payment.status != PaymentStatus.SUCCEEDED:
            return
        if payment.amount_minor > 0:
            await _provider_call(
                get_provider(settings, payment.provider).refund(
                    provider_ref=payment.provider_ref or "",
                    payment_intent=payment.provider_payment_intent,
                    amount_minor=payment.amount_minor,
                    idempotency_key=f"refund-{payment.id}",
                )
            )
        payment.status = PaymentStatus.REFUNDED
        await record_event(
            db, "payment.refunded", actor_id=actor_id, subject_id=payment.id, payload=self._payload(payment)
        )
        await db.flush()

    async def get(self, db: AsyncSession, payment_id: UUID) -> Payment | None:
        return await payment_repository.get(db, payment_id)

    async def for_purchase(self, db: AsyncSession, purchase_id: UUID) -> Payment | None:
        return await payment_repository.for_purchase(db, purchase_id)

    async def latest_for_purchases(self, db: AsyncSession, purchase_ids: list[UUID]) -> dict[UUID, Payment]:
        return await payment_repository.latest_for_purchases(db, purchase_ids)

    async def for_invoice(self, db: AsyncSession, invoice_id: UUID) -> Payment | None:
        return await payment_repository.for_invoice(db, invoice_id)

    # --- payout accounts ------------------------------------------------------------------

    async def payout_account(self, db: AsyncSession, user_id: UUID) -> PayoutAccount | None:
        return await payment_repository.payout_account(db, user_id)

    async def connect_payout_account(
        self, db: AsyncSession, settings: Settings, *, user_id: UUID, email: str
    ) -> tuple[PayoutAccount, bool]:
        """The user's payout account, created at the configured provider the first time.
        Returns it and whether this call created it.

        The provider call carries the idempotency key ``payout-account-<user id>``: a retry after
        a failed commit (or a concurrent request) gets the same provider account back, not a
        second one. The local provider has nothing to fill in, so its account is enabled at once.
        """
        existing = await payment_repository.payout_account(db, user_id)
        if existing is not None:
            return existing, False
        provider = get_provider(settings)
        try:
            account_id = await provider.create_payout_account(
                email=email, idempotency_key=f"payout-account-{user_id}"
            )
        except PaymentProviderError as exc:
            raise ServiceUnavailable(
                f"The payment provider refused or failed: {exc}", code="payment_provider_error"
            ) from exc
        ready = provider.name == "local"
        new_id = await payment_repository.insert_payout_account_unless_exists(
            db,
            {
                "user_id": user_id,
                "provider": provider.name,
                "provider_account_id": account_id,
                "details_submitted": ready,
                "payouts_enabled": ready,
                "status": payout_account_status(details_submitted=ready, payouts_enabled=ready),
            },
        )
        account = await payment_repository.payout_account(db, user_id)
        assert account is not None
        if new_id is None:  # a concurrent request stored it first
            return account, False
        await record_event(
            db,
            "payout_account.created",
            actor_id=user_id,
            subject_id=account.id,
            payload=self._account_payload(account),
        )
        return account, True

    async def onboarding_url(self, settings: Settings, account: PayoutAccount) -> str | None:
        """A fresh single-use link where the builder finishes (or updates) onboarding; None when
        payouts are already enabled."""
        if account.payouts_enabled:
            return None
        base = settings.public_base_url.rstrip("/")
        try:
            return await get_provider(settings, account.provider).onboarding_link(
                account_id=account.provider_account_id,
                return_url=f"{base}/billing?payoutOnboarding=done",
                refresh_url=f"{base}/billing?payoutOnboarding=refresh",
            )
        except PaymentProviderError as exc:
            raise ServiceUnavailable(
                f"The payment provider refused or failed: {exc}", code="payment_provider_error"
            ) from exc

    async def update_payout_account(
        self, db: AsyncSession, account: PayoutAccount, *, details_submitted: bool, payouts_enabled: bool
    ) -> bool:
        """Apply the provider's view of the account; records ``payout_account.updated`` and
        returns True only when something changed."""
        status = payout_account_status(details_submitted=details_submitted, payouts_enabled=payouts_enabled)
        before = (account.details_submitted, account.payouts_enabled, account.status)
        if before == (details_submitted, payouts_enabled, status):
            return False
        account.details_submitted = details_submitted
        account.payouts_enabled = payouts_enabled
        account.status = status
        await db.flush()
        await record_event(
            db,
            "payout_account.updated",
            actor_id=None,
            subject_id=account.id,
            payload={**self._account_payload(account), "previousStatus": before[2]},
        )
        return True

    @staticmethod
    def _account_payload(account: PayoutAccount) -> dict[str, Any]:
        return {
            "payoutAccountId": str(account.id),
            "userId": str(account.user_id),
            "provider": account.provider,
            "providerAccountId": account.provider_account_id,
            "status": account.status,
            "detailsSubmitted": account.details_submitted,
            "payoutsEnabled": account.payouts_enabled,
        }

    @staticmethod
    def _payload(payment: Payment) -> dict[str, Any]:
        return {
            "paymentId": str(payment.id),
            "kind": payment_kind(payment),
            "purchaseId": str(payment.purchase_id) if payment.purchase_id else None,
            "invoiceId": str(payment.invoice_id) if payment.invoice_id else None,
            "provider": payment.provider,
            "amountMinor": payment.amount_minor,
            "currency": payment.currency,
            "processorFeeMinor": payment.processor_fee_minor,
        }


payment_service = PaymentService()
