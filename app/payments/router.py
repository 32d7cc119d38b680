from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response, status

from app.auth.deps import CurrentPrincipal, require_permission
from app.auth.permissions import Perm
from app.core.db import DB
from app.core.errors import NotFound
from app.core.openapi import errors
from app.core.principal import Principal
from app.core.runtime import runtime
from app.models import PayoutAccount
from app.payments.schemas import PayoutAccountOut, WebhookAck
from app.payments.service import payment_service
from app.payments.webhooks import stripe_webhooks
from app.users.service import user_service

router = APIRouter()

Builder = Annotated[Principal, Depends(require_permission(Perm.MARKETPLACE_PUBLISH))]

_STRIPE_EVENT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A Stripe event, exactly as Stripe sent it (the signature covers the raw bytes).",
        "content": {
            "application/json": {
                "schema": {"type": "object", "required": ["id", "type", "data"]},
                "example": {
                    "id": "evt_1Q0abc",
                    "object": "event",
                    "type": "checkout.session.completed",
                    "created": 1767225600,
                    "data": {"object": {"id": "cs_test_a1b2", "payment_status": "paid"}},
                },
            }
        },
    }
}


@router.post(
    "/api/billing/webhooks/stripe",
    tags=["billing"],
    response_model=WebhookAck,
    responses={
        **errors(400, 503),
        400: {
            **errors(400)[400],
            "description": "`invalid_signature`: missing or wrong `Stripe-Signature`; "
            "`invalid_payload`: signed, but not an event",
        },
        503: {**errors(503)[503], "description": "`webhooks_not_configured`: no webhook secret or API key"},
    },
    openapi_extra=_STRIPE_EVENT_BODY,
)
async def stripe_webhook(
    request: Request,
    db: DB,
    stripe_signature: Annotated[
        str | None, Header(alias="Stripe-Signature", description="Stripe's `t=...,v1=...` signature")
    ] = None,
) -> WebhookAck:
    """Called by Stripe, not by users (no token; the signature authenticates it). The event is
    stored once by its id and applied by the worker shortly after; a redelivery answers 200
    with `duplicate: true` and changes nothing."""
    stored = await stripe_webhooks.receive(db, runtime().settings, await request.body(), stripe_signature)
    return WebhookAck(duplicate=not stored)


@router.post(
    "/api/payments/payout-account",
    tags=["payments"],
    response_model=PayoutAccountOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        **errors(401, 403, 503),
        200: {"description": "You already have an account: it, with a fresh onboarding link"},
    },
)
async def connect_payout_account(db: DB, principal: Builder, response: Response) -> PayoutAccountOut:
    """Builders: create your payout account (a Stripe Connect Express account) and get a link
    to finish onboarding there; call again for a fresh link. Paid listings need `payoutsEnabled`,
    which Stripe reports once onboarding is done. With the local provider the account is
    enabled at once."""
    settings = runtime().settings
    user = await user_service.get(db, principal.user_id)
    account, created = await payment_service.connect_payout_account(
        db, settings, user_id=principal.user_id, email=user.email if user else ""
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return _account_out(account, await payment_service.onboarding_url(settings, account))


@router.get(
    "/api/payments/payout-account",
    tags=["payments"],
    response_model=PayoutAccountOut,
    responses=errors(401, 404),
)
async def get_payout_account(db: DB, principal: CurrentPrincipal) -> PayoutAccountOut:
    """Your payout account and its state (no onboarding link: `POST` makes one)."""
    account = await payment_service.payout_account(db, principal.user_id)
    if account is None:
        raise NotFound("You have no payout account yet", code="payout_account_not_found")
    return _account_out(account, None)


def _account_out(account: PayoutAccount, onboarding_url: str | None) -> PayoutAccountOut:
    return PayoutAccountOut(
        id=account.id,
        account_id=account.provider_account_id,
        provider=account.provider,
        status=account.status,
        details_submitted=account.details_submitted,
        payouts_enabled=account.payouts_enabled,
        onboarding_url=onboarding_url,
        created_at=account.created_at,
        updated_at=account.updated_at,
    )
