"""Payment providers: one interface, ``local`` (embedded default) and ``stripe``.

The local provider settles at once with a simulated processor fee, so every event and ledger
entry of a real sale happens with nothing configured. Stripe settles on its webhook.
"""

from dataclasses import dataclass, field
from typing import Protocol

from app.core.config import Settings
from app.core.ids import uuid7
from app.revenue.splits import simulated_processor_fee


@dataclass(frozen=True)
class CheckoutRequest:
    payment_id: str
    amount_minor: int
    currency: str
    description: str
    customer_email: str
    success_url: str
    cancel_url: str
    # A builder's share goes to them later by transfer (separate charges and transfers); the
    # group ties the charge to those transfers in the processor's dashboard.
    transfer_group: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckoutStarted:
    provider_ref: str
    checkout_url: str | None
    # Set when the provider settled at once (local): the processor fee it charged.
    settled_fee_minor: int | None = None
    payment_intent: str | None = None


@dataclass(frozen=True)
class TransferResult:
    transfer_id: str


class PaymentProviderError(Exception):
    """The provider refused or failed; the message is safe to show."""


class PaymentProvider(Protocol):
    name: str

    async def start_checkout(self, request: CheckoutRequest, *, idempotency_key: str) -> CheckoutStarted: ...

    async def refund(
        self, *, provider_ref: str, payment_intent: str | None, amount_minor: int, idempotency_key: str
    ) -> str: ...

    async def create_payout_account(self, *, email: str, idempotency_key: str) -> str: ...

    async def onboarding_link(self, *, account_id: str, return_url: str, refresh_url: str) -> str: ...

    async def transfer(
        self, *, amount_minor: int, currency: str, destination: str, idempotency_key: str, transfer_group: str
    ) -> TransferResult: ...


class LocalProvider:
    name = "local"

    def __init__(self, settings: Settings) -> None:
        self._fee_bps = settings.local_processor_fee_bps
        self._fee_fixed = settings.local_processor_fee_fixed_minor

    async def start_checkout(self, request: CheckoutRequest, *, idempotency_key: str) -> CheckoutStarted:
        fee = simulated_processor_fee(request.amount_minor, self._fee_bps, self._fee_fixed)
        return CheckoutStarted(
            provider_ref=f"local_{idempotency_key}", checkout_url=None, settled_fee_minor=fee
        )

    async def refund(
        self, *, provider_ref: str, payment_intent: str | None, amount_minor: int, idempotency_key: str
    ) -> str:
        return f"local_refund_{uuid7().hex}"

    async def create_payout_account(self, *, email: str, idempotency_key: str) -> str:
        return f"local_acct_{uuid7().hex}"

    async def onboarding_link(self, *, account_id: str, return_url: str, refresh_url: str) -> str:
        # Nothing to fill in locally: the account is ready at once.
        return return_url

    async def transfer(
        self, *, amount_minor: int, currency: str, destination: str, idempotency_key: str, transfer_group: str
    ) -> TransferResult:
        return TransferResult(transfer_id=f"local_tr_{idempotency_key}")


_providers: dict[str, PaymentProvider] = {}


def get_provider(settings: Settings, name: str | None = None) -> PaymentProvider:
    """The configured provider (or the one a stored payment used), built once per process."""
    name = name or settings.payment_provider
    if name not in _providers:
        if name == "local":
            _providers[name] = LocalProvider(settings)
        elif name == "stripe":
            from app.payments.stripe_provider import StripeProvider

            _providers[name] = StripeProvider(settings)
        else:
            raise PaymentProviderError(f"unknown payment provider {name!r}")
    return _providers[name]


def reset_providers() -> None:
    """Forget built providers (settings changed: tests, start-up)."""
    _providers.clear()
