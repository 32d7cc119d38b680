from datetime import datetime
from uuid import UUID

from pydantic import Field

from app.core.schemas import Schema


class PayoutAccountOut(Schema):
    id: UUID
    account_id: str = Field(description="The provider's account id (`acct_...` on Stripe)")
    provider: str
    status: str = Field(description="`pending` (onboarding not finished), `restricted` or `enabled`")
    details_submitted: bool
    payouts_enabled: bool = Field(description="Payouts can be sent; paid listings need this")
    onboarding_url: str | None = Field(
        None,
        description="Where to finish or update onboarding (single use, expires within minutes); "
        "null when there is nothing to finish",
    )
    created_at: datetime
    updated_at: datetime


class WebhookAck(Schema):
    received: bool = True
    duplicate: bool = Field(False, description="The event was received before; nothing was done")
