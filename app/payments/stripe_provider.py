"""Stripe: Checkout for payments, Connect Express accounts and transfers for builders.

Money flow: **separate charges and transfers**. The buyer pays the platform (a Checkout
Session); the builder's share is credited in our ledger and sent later by
``POST /api/revenue/distribute`` as a transfer to their connected account. We chose this over
destination charges because payouts wait for a settlement delay (the refund window), are
batched above a minimum, and can be retried or held, none of which a destination charge (which
moves the money at payment time) allows; the ledger stays the single source of truth for what
each builder is owed. ``transfer_group`` ties a charge to the transfers that pay it out.
"""

import time
from typing import Any

import stripe

from app.core.config import Settings
from app.payments.providers import CheckoutRequest, CheckoutStarted, PaymentProviderError, TransferResult

CHECKOUT_EXPIRY_SECONDS = 30 * 60


class StripeProvider:
    name = "stripe"

    def __init__(self, settings: Settings) -> None:
        if settings.stripe_api_key is None:
            raise PaymentProviderError("STRIPE_API_KEY is not set")
        base = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
        self._client = stripe.StripeClient(
            settings.stripe_api_key.get_secret_value(),
            base_addresses=base,  # type: ignore[arg-type]
            http_client=stripe.HTTPXClient(),
            max_network_retries=2,
        )

    async def start_checkout(self, request: CheckoutRequest, *, idempotency_key: str) -> CheckoutStarted:
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.currency,
                        "unit_amount": request.amount_minor,
                        "product_data": {"name": request.description[:250] or "Bazaar purchase"},
                    },
                }
            ],
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
            "client_reference_id": request.payment_id,
            # Stripe's shortest expiry: an abandoned checkout releases the purchase within half an
            # hour (checkout.session.expired) instead of blocking a new attempt for a day.
            "expires_at": int(time.time()) + CHECKOUT_EXPIRY_SECONDS,
            "metadata": request.metadata,
            "payment_intent_data": {"transfer_group": request.transfer_group, "metadata": request.metadata},
        }
        if request.customer_email:
            params["customer_email"] = request.customer_email
        session = await self._call(
            self._client.v1.checkout.sessions.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        )
        return CheckoutStarted(provider_ref=session.id, checkout_url=session.url)

    async def processor_fee(self, payment_intent_id: str) -> tuple[int, str | None]:
        """The fee Stripe kept on a payment intent's charge (from its balance transaction)."""
        intent = await self._call(self._client.v1.payment_intents.retrieve_async(payment_intent_id))
        charge_id = intent.latest_charge if isinstance(intent.latest_charge, str) else None
        if charge_id is None:
            return 0, None
        charge = await self._call(self._client.v1.charges.retrieve_async(charge_id))
        txn_id = charge.balance_transaction if isinstance(charge.balance_transaction, str) else None
        if txn_id is None:
            return 0, charge_id
        txn = await self._call(self._client.v1.balance_transactions.retrieve_async(txn_id))
        return int(txn.fee), charge_id

    async def refund(
        self, *, provider_ref: str, payment_intent: str | None, amount_minor: int, idempotency_key: str
    ) -> str:
        if payment_intent is None:
            raise PaymentProviderError("payment has no payment intent to refund")
        refund = await self._call(
            self._client.v1.refunds.create_async(
                params={"payment_intent": payment_intent, "amount": amount_minor},
                options={"idempotency_key": idempotency_key},
            )
        )
        return str(refund.id)

    async def create_payout_account(self, *, email: str, idempotency_key: str) -> str:
        account = await self._call(
            self._client.v1.accounts.create_async(
                params={
                    "type": "express",
                    "email": email,
                    "capabilities": {"transfers": {"requested": True}},
                },
                options={"idempotency_key": idempotency_key},
            )
        )
        return str(account.id)

    async def onboarding_link(self, *, account_id: str, return_url: str, refresh_url: str) -> str:
        link = await self._call(
            self._client.v1.account_links.create_async(
                params={
                    "account": account_id,
                    "type": "account_onboarding",
                    "return_url": return_url,
                    "refresh_url": refresh_url,
                }
            )
        )
        return str(link.url)

    async def transfer(
        self, *, amount_minor: int, currency: str, destination: str, idempotency_key: str, transfer_group: str
    ) -> TransferResult:
        transfer = await self._call(
            self._client.v1.transfers.create_async(
                params={
                    "amount": amount_minor,
                    "currency": currency,
                    "destination": destination,
                    "transfer_group": transfer_group,
                },
                options={"idempotency_key": idempotency_key},
            )
        )
        return TransferResult(transfer_id=str(transfer.id))

    def verify_webhook(self, payload: bytes, signature: str, secret: str) -> dict[str, Any]:
        """The event, if ``signature`` is Stripe's signature of exactly ``payload``."""
        try:
            stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature, secret, tolerance=300)
        except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
            raise PaymentProviderError("webhook signature is not valid") from exc
        import json

        event: dict[str, Any] = json.loads(payload)
        return event

    @staticmethod
    async def _call(awaitable: Any) -> Any:
        try:
            return await awaitable
        except stripe.StripeError as exc:
            raise PaymentProviderError(exc.user_message or str(exc)) from exc
