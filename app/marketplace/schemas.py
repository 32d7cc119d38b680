from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, StringConstraints, field_validator

from app.analytics.schemas import MarketplaceReport
from app.core.schemas import InputSchema, Schema

Currency = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z]{3}$", to_lower=True)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=40, pattern=r"^[\w\- ]+$", to_lower=True)]
Category = Literal[
    "customer-support",
    "sales",
    "marketing",
    "education",
    "productivity",
    "health",
    "finance",
    "legal",
    "developer-tools",
    "entertainment",
    "other",
]


class PublishRequest(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "priceMinor": 1900,
                    "currency": "usd",
                    "description": "Answers customer questions from your help centre, 24/7.",
                    "category": "customer-support",
                    "tags": ["support", "helpdesk"],
                }
            ]
        }
    )

    # strict: a JSON integer only; lax mode would take true as 1, "1900" and 19.0 as prices.
    price_minor: int = Field(
        ge=0, le=100_000_000, strict=True, description="Price in minor units (cents); 0 is free"
    )
    currency: Currency = "usd"
    description: Annotated[str, StringConstraints(min_length=1, max_length=5000)]
    category: Category
    tags: Annotated[list[Tag], Field(max_length=10)] = Field(default_factory=list)
    title: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, description="Listing title; defaults to the project's name"
    )

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, tags: list[str]) -> list[str]:
        return sorted(set(tags))


class ListingStatusUpdate(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "held", "reason": "Reported for spam"}]}
    )

    status: Literal["active", "held", "delisted"]
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class ListingOut(Schema):
    """The seed's MarketplaceProject."""

    id: UUID
    project_id: UUID
    builder_id: UUID
    builder_name: str
    title: str
    description: str
    category: str
    tags: list[str]
    price_minor: int
    currency: str
    status: str
    published_at: datetime | None
    purchase_count: int
    created_at: datetime
    updated_at: datetime


class ListingAuditOut(Schema):
    actor_id: UUID | None
    from_status: str | None
    to_status: str
    reason: str | None
    created_at: datetime


class ListingDetail(ListingOut):
    audit: list[ListingAuditOut] = Field(
        default_factory=list, description="Moderation trail (owner and admins only)"
    )


class PurchaseRequest(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"projectId": "01a2143e-c35c-7897-b4eb-650855404078"}]}
    )

    project_id: UUID | None = Field(None, description="The listed project to buy")
    listing_id: UUID | None = Field(None, description="Or the listing itself")


class PurchaseOut(Schema):
    """The seed's Purchase."""

    id: UUID
    user_id: UUID
    project_id: UUID
    listing_id: UUID
    amount_minor: int
    currency: str
    status: str
    provider: str
    payment_id: UUID | None = None
    checkout_url: str | None = Field(None, description="Where to pay (Stripe Checkout); none once settled")
    purchased_at: datetime = Field(description="When the purchase was made")
    completed_at: datetime | None
    refunded_at: datetime | None


class RefundRequest(InputSchema):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class MarketplaceAnalytics(MarketplaceReport):
    """The seed's MarketplaceAnalytics, read from the published warehouse marts."""

    scope: Literal["platform", "builder"]
    builder_id: UUID | None
