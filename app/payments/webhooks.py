"""Stripe webhooks: verify the signature, store the event once, process it in the worker.

Intake (``receive``) runs in the request: it checks ``Stripe-Signature`` against the raw body,
inserts the event into ``webhook_events`` unique by (provider, event id) and enqueues
``payments.process_webhook_event`` **in the same transaction** (procrastinate's job insert
runs on the request's connection). So a stored event always has its job, the worker never sees
a job before the event is committed, and a duplicate delivery stores and enqueues nothing.
The minutely sweeper (``payments.process_pending_webhooks``) picks up whatever a crash or a
failed attempt left unprocessed.

Processing (``process``) takes the event row with ``FOR UPDATE SKIP LOCKED`` (one worker at a
time; another one skips it), applies it in a savepoint and marks it processed in one
transaction. A failed attempt is rolled back to the savepoint and recorded (``attempts``,
``last_error``, ``next_attempt_at``) for the sweeper to retry with exponential backoff (0, 1, 3,
7... minutes, capped at six hours); after 20 attempts, about three days, it is left for a person.

Every handler is idempotent on its own: payments only leave ``pending`` once
(``mark_succeeded``/``mark_failed`` return False afterwards) and a payout account only takes
state from an event newer than the last one applied. Replayed, duplicated or out-of-order
events therefore change nothing twice.

Decisions worth knowing:

* ``payment_intent.payment_failed`` on a Checkout payment is a *declined attempt*, not a failed
  payment: the Checkout page lets the customer try another card in the same session. The
  payment fails when the session expires (``checkout.session.expired``) or an asynchronous
  method fails (``checkout.session.async_payment_failed``). Failing it on the first decline
  would turn a successful second attempt into money taken for a failed purchase.
* A success reported for a payment already ``failed`` is not applied (the purchase stays
  failed): it is logged as an error and recorded as ``payment.succeeded_after_failure`` for
  an administrator to refund or settle by hand.
* ``charge.refunded`` for a refund we made is acknowledged; a refund made elsewhere (Stripe
  dashboard) is logged as a warning for reconciliation and changes nothing here.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import commit, sessionmaker
from app.core.errors import BadRequest, ServiceUnavailable
from app.core.events import record_event
from app.core.runtime import runtime
from app.models import Payment, PaymentStatus, WebhookEvent
from app.payments.providers import PaymentProviderError, get_provider
from app.payments.repository import payment_repository
from app.payments.service import PaymentCallback, payment_kind, payment_service
from app.worker.queue import queue

if TYPE_CHECKING:
    from app.payments.stripe_provider import StripeProvider

logger = logging.getLogger("bazaar.payments.webhooks")

PROCESS_WEBHOOK_TASK = "payments.process_webhook_event"

Obj = dict[str, Any]


class WebhookRejected(Exception):
    """The event can never be applied (it contradicts what we stored): mark it processed with
    this reason instead of retrying it."""


class MissingPaymentHandler(Exception):
    """No domain registered what a payment of this kind means in this process; retry later
    rather than record a payment whose purchase or invoice nobody completes."""


def _stripe(settings: Settings) -> "StripeProvider":
    from app.payments.stripe_provider import StripeProvider

    provider = get_provider(settings, "stripe")
    assert isinstance(provider, StripeProvider)
    return provider


Handler = Callable[[AsyncSession, Settings, WebhookEvent], Awaitable[None]]


class StripeWebhooks:
    provider = "stripe"

    def __init__(self) -> None:
        # Types not listed are stored and marked processed without doing anything.
        self._handlers: dict[str, Handler] = {
            "checkout.session.completed": self._checkout_session_completed,
            "checkout.session.async_payment_succeeded": self._checkout_session_completed,
            "checkout.session.async_payment_failed": self._checkout_session_failed,
            "checkout.session.expired": self._checkout_session_failed,
            "payment_intent.succeeded": self._payment_intent_succeeded,
            "payment_intent.payment_failed": self._payment_intent_failed,
            "charge.refunded": self._charge_refunded,
            "account.updated": self._account_updated,
        }

    # --- intake (in the request) ------------------------------------------------------------

    async def receive(self, db: AsyncSession, settings: Settings, body: bytes, signature: str | None) -> bool:
        """Verify, store and enqueue one delivery. Returns False for an event stored before."""
        if settings.stripe_webhook_secret is None:
            raise ServiceUnavailable("Stripe webhooks are not configured", code="webhooks_not_configured")
        try:
            stripe = _stripe(settings)
        except PaymentProviderError as exc:
            raise ServiceUnavailable(str(exc), code="webhooks_not_configured") from exc
        if not signature:
            raise BadRequest("The Stripe-Signature header is missing", code="invalid_signature")
        try:
            event = stripe.verify_webhook(body, signature, settings.stripe_webhook_secret.get_secret_value())
        except PaymentProviderError as exc:
            raise BadRequest(
                "The Stripe-Signature does not match the body", code="invalid_signature"
            ) from exc
        except ValueError as exc:  # signed, but not JSON
            raise BadRequest("The event is not valid JSON", code="invalid_payload") from exc
        event_id, type_ = (event.get("id"), event.get("type")) if isinstance(event, dict) else (None, None)
        if not (isinstance(event_id, str) and 0 < len(event_id) <= 255):
            raise BadRequest("The event has no valid id", code="invalid_payload")
        if not (isinstance(type_, str) and 0 < len(type_) <= 100):
            raise BadRequest("The event has no valid type", code="invalid_payload")
        webhook_id = await payment_repository.store_webhook(db, self.provider, event_id, type_, event)
        if webhook_id is None:
            return False
        connection = await (await db.connection()).get_raw_connection()
        await queue.configure_task(PROCESS_WEBHOOK_TASK, connection=connection.driver_connection).defer_async(
            webhook_id=str(webhook_id)
        )
        return True

    # --- processing (in the worker) -----------------------------------------------------------

    async def process(self, webhook_id: UUID) -> str:
        """Apply one stored event, at most once. Returns ``processed``, ``rejected``, ``failed``
        or ``skipped`` (already processed, or another worker holds it)."""
        settings = runtime().settings
        async with sessionmaker()() as db:
            webhook = await payment_repository.webhook_for_update(db, webhook_id)
            if webhook is None or webhook.processed_at is not None:
                return "skipped"
            handler, event_id = self._handlers.get(webhook.type), webhook.event_id
            callbacks: list[Any] = db.info.setdefault("after_commit", [])
            registered = len(callbacks)
            outcome, error = "processed", None
            try:
                async with db.begin_nested():
                    if handler is not None:
                        await handler(db, settings, webhook)
            except WebhookRejected as exc:
                outcome, error = "rejected", str(exc)
                logger.error("stripe event rejected", extra={"eventId": event_id, "reason": error})
            except Exception as exc:
                outcome, error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
                logger.exception("stripe event failed", extra={"eventId": event_id})
            if outcome != "processed":
                del callbacks[registered:]  # registered by changes rolled back with the savepoint
            await payment_repository.finish_webhook(db, webhook_id, error=error, done=outcome != "failed")
            await commit(db)
            return outcome

    async def process_pending(self, limit: int = 100) -> int:
        """Process stored events still waiting (a lost job, a crash, a failed attempt)."""
        async with sessionmaker()() as db:
            ids = await payment_repository.unprocessed_webhook_ids(db, limit)
        outcomes = [await self.process(webhook_id) for webhook_id in ids]
        return outcomes.count("processed") + outcomes.count("rejected")

    # --- payments -------------------------------------------------------------------------------

    async def _checkout_session_completed(
        self, db: AsyncSession, settings: Settings, webhook: WebhookEvent
    ) -> None:
        session = _object(webhook)
        if session.get("payment_status") != "paid":
            return  # an asynchronous method: checkout.session.async_payment_succeeded follows
        payment = await payment_repository.by_provider_ref(db, self.provider, str(session.get("id")))
        if payment is None:
            logger.warning("checkout session of no payment", extra={"sessionId": session.get("id")})
            return
        _check_amount(payment, session.get("amount_total"), session.get("currency"))
        intent = session.get("payment_intent")
        if not isinstance(intent, str):
            raise WebhookRejected(f"paid checkout session {session.get('id')} has no payment intent")
        await self._settle(db, settings, payment, intent)

    async def _checkout_session_failed(
        self, db: AsyncSession, settings: Settings, webhook: WebhookEvent
    ) -> None:
        session = _object(webhook)
        payment = await payment_repository.by_provider_ref(db, self.provider, str(session.get("id")))
        if payment is None:
            return
        reason = "Checkout session expired" if webhook.type.endswith("expired") else "Payment failed"
        await self._fail(db, payment, reason)

    async def _payment_intent_succeeded(
        self, db: AsyncSession, settings: Settings, webhook: WebhookEvent
    ) -> None:
        intent = _object(webhook)
        payment = await self._payment_of_intent(db, intent)
        if payment is None:
            return
        _check_amount(payment, intent.get("amount_received") or intent.get("amount"), intent.get("currency"))
        await self._settle(db, settings, payment, str(intent["id"]))

    async def _payment_intent_failed(
        self, db: AsyncSession, settings: Settings, webhook: WebhookEvent
    ) -> None:
        intent = _object(webhook)
        payment = await self._payment_of_intent(db, intent)
        if payment is None:
            return
        error = intent.get("last_payment_error") or {}
        reason = str(error.get("message") or "The payment was declined")
        if (payment.provider_ref or "").startswith("cs_"):
            # Checkout lets the customer retry in the same session (module docstring).
            logger.info(
                "checkout payment attempt declined", extra={"paymentId": str(payment.id), "reason": reason}
            )
            return
        await self._fail(db, payment, reason)

    async def _charge_refunded(self, db: AsyncSession, settings: Settings, webhook: WebhookEvent) -> None:
        charge = _object(webhook)
        intent = charge.get("payment_intent")
        payment = await payment_repository.by_payment_intent(db, intent) if isinstance(intent, str) else None
        if payment is not None and payment.status == PaymentStatus.SUCCEEDED:
            logger.warning(
                "charge refunded outside Bazaar: reconcile by hand",
                extra={"paymentId": str(payment.id), "chargeId": charge.get("id")},
            )

    async def _settle(self, db: AsyncSession, settings: Settings, payment: Payment, intent: str) -> None:
        if payment.status == PaymentStatus.FAILED:
            await self._succeeded_after_failure(db, payment, intent)
            return
        if payment.status != PaymentStatus.PENDING:
            return  # settled by the other event of the pair, or refunded since
        _require_handler(payment, payment_service.on_succeeded)
        fee, _ = await _stripe(settings).processor_fee(intent)
        await payment_service.mark_succeeded(db, payment, processor_fee_minor=fee, payment_intent=intent)

    async def _fail(self, db: AsyncSession, payment: Payment, reason: str) -> None:
        if payment.status == PaymentStatus.PENDING:
            _require_handler(payment, payment_service.on_failed)
            await payment_service.mark_failed(db, payment, reason=reason)

    async def _succeeded_after_failure(self, db: AsyncSession, payment: Payment, intent: str) -> None:
        if payment.provider_payment_intent == intent:
            return  # reported already (by the other event of the pair)
        payment.provider_payment_intent = intent
        logger.error(
            "payment succeeded after it was marked failed: refund or settle by hand",
            extra={"paymentId": str(payment.id), "paymentIntent": intent},
        )
        await record_event(
            db,
            "payment.succeeded_after_failure",
            actor_id=payment.user_id,
            subject_id=payment.id,
            payload={
                "paymentId": str(payment.id),
                "kind": payment_kind(payment),
                "provider": payment.provider,
                "paymentIntent": intent,
                "amountMinor": payment.amount_minor,
                "currency": payment.currency,
                "failureReason": payment.failure_reason,
            },
        )
        await db.flush()

    async def _payment_of_intent(self, db: AsyncSession, intent: Obj) -> Payment | None:
        """Our payment for a payment intent: known by its id once settled, else by the
        ``payment_id`` metadata Checkout copies onto the intent."""
        payment = await payment_repository.by_payment_intent(db, str(intent.get("id")))
        if payment is not None:
            return payment
        try:
            payment_id = UUID(str((intent.get("metadata") or {}).get("payment_id")))
        except ValueError:
            return None
        payment = await payment_repository.get(db, payment_id, for_update=True)
        return payment if payment is not None and payment.provider == self.provider else None

    # --- payout accounts ----------------------------------------------------------------------

    async def _account_updated(self, db: AsyncSession, settings: Settings, webhook: WebhookEvent) -> None:
        account = _object(webhook)
        account_id = str(account.get("id"))
        payout = await payment_repository.payout_account_by_provider_id(db, account_id)
        if payout is None:
            return
        # Row locked above, so concurrent updates of one account apply one after the other;
        # an update older than one already applied would roll the account back.
        created = int(webhook.payload.get("created") or 0)
        if await payment_repository.newer_webhook_applied(db, webhook, account_id, created):
            return
        transfers = (account.get("capabilities") or {}).get("transfers")
        await payment_service.update_payout_account(
            db,
            payout,
            details_submitted=bool(account.get("details_submitted")),
            payouts_enabled=bool(account.get("payouts_enabled")) and transfers == "active",
        )


def _object(webhook: WebhookEvent) -> Obj:
    obj = (webhook.payload.get("data") or {}).get("object")
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        raise WebhookRejected("the event has no data.object with an id")
    return obj


def _check_amount(payment: Payment, amount: Any, currency: Any) -> None:
    if amount != payment.amount_minor or str(currency).lower() != payment.currency.lower():
        raise WebhookRejected(
            f"payment {payment.id} is {payment.amount_minor} {payment.currency}, "
            f"the provider reports {amount} {currency}"
        )


def _require_handler(payment: Payment, callbacks: dict[str, PaymentCallback]) -> None:
    if payment_kind(payment) not in callbacks:
        raise MissingPaymentHandler(f"no handler for {payment_kind(payment)} payments is registered")


stripe_webhooks = StripeWebhooks()
