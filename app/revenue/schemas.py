from datetime import UTC, datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, StringConstraints, field_validator, model_validator

from app.core.schemas import InputSchema, Schema

Currency = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z]{3}$", to_lower=True)]
Period = Literal["day", "week", "month"]


class CalculateRequest(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"projectId": "0195a1f2-7c3e-7a41-9d0e-3b2f1c4d5e6f", "from": "2026-11-01T00:00:00Z"},
                {"priceMinor": 1900, "currency": "usd"},
            ]
        }
    )

    builder_id: UUID | None = Field(
        None, description="Whose sales (admins: anyone, or leave out for the whole platform; builders: own)"
    )
    project_id: UUID | None = Field(None, description="Only this project's sales")
    from_: datetime | None = Field(None, alias="from", description="Posted at or after (ISO 8601)")
    to: datetime | None = Field(None, description="Posted before (ISO 8601)")
    price_minor: int | None = Field(
        None, ge=0, le=100_000_000, description="What-if: split one sale at this price (minor units)"
    )
    currency: Currency | None = Field(None, description="Currency of the what-if sale (default usd)")
    platform_fee_bps: int | None = Field(
        None, ge=0, le=10_000, description="What-if platform fee; default: the builder's plan fee"
    )

    @field_validator("from_", "to")
    @classmethod
    def _utc(cls, moment: datetime | None) -> datetime | None:
        """A moment without a zone is UTC."""
        return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment

    @model_validator(mode="after")
    def _consistent(self) -> "CalculateRequest":
        if self.from_ is not None and self.to is not None and self.from_ >= self.to:
            raise ValueError("from must be before to")
        if self.price_minor is None and (self.currency is not None or self.platform_fee_bps is not None):
            raise ValueError("currency and platformFeeBps preview a sale: give priceMinor too")
        return self


class SplitTotals(Schema):
    """Sales and refunds of one currency, as posted to the ledger.

    ``netMinor`` is the builder's share after refunds (``builderShareMinor -
    refundedBuilderShareMinor``); the processor keeps its fee on a refund, the platform bears it."""

    currency: str
    sales_count: int = 0
    refunds_count: int = 0
    gross_minor: int = 0
    processor_fee_minor: int = 0
    platform_fee_minor: int = 0
    builder_share_minor: int = 0
    refunds_minor: int = Field(0, description="Gross given back to buyers")
    refunded_platform_fee_minor: int = 0
    refunded_builder_share_minor: int = 0
    net_minor: int = Field(0, description="Builder share after refunds")


class ProjectSplitTotals(SplitTotals):
    project_id: UUID


class SalePreview(Schema):
    price_minor: int
    currency: str
    platform_fee_bps: int
    processor_fee_minor: int = Field(
        description="Estimated with the local provider's simulated card fee; Stripe reports the real one"
    )
    platform_fee_minor: int
    builder_share_minor: int


class CalculateOut(Schema):
    builder_id: UUID | None
    project_id: UUID | None
    from_: datetime | None = Field(alias="from")
    to: datetime | None
    totals: list[SplitTotals]
    projects: list[ProjectSplitTotals]
    preview: SalePreview | None = None


class DistributeRequest(InputSchema):
    model_config = ConfigDict(json_schema_extra={"examples": [{}, {"builderId": None, "currency": "usd"}]})

    builder_id: UUID | None = Field(None, description="Only this builder (default: every builder)")
    currency: Currency | None = Field(None, description="Only balances in this currency")


class PayoutOut(Schema):
    id: UUID
    builder_id: UUID
    amount_minor: int
    currency: str
    status: str
    provider: str
    provider_transfer_id: str | None
    failure_reason: str | None
    attempts: int
    created_at: datetime
    paid_at: datetime | None


SkipReason = Literal["below_minimum", "no_payout_account", "payouts_not_enabled"]


class SkippedBalance(Schema):
    builder_id: UUID
    currency: str
    available_minor: int
    reason: SkipReason


class PayoutTotals(Schema):
    currency: str
    payouts: int = 0
    paid_minor: int = 0
    failed_minor: int = 0
    pending_minor: int = Field(0, description="Transfer outcome unknown: retried by the next distribution")


class DistributeOut(Schema):
    payouts: list[PayoutOut]
    skipped: list[SkippedBalance]
    totals: list[PayoutTotals]


class BalanceTotals(Schema):
    """A builder's money in one currency. ``balanceMinor = pendingMinor + availableMinor`` and
    ``availableMinor = earnedMinor - refundedMinor - paidOutMinor - inTransitMinor``."""

    currency: str
    earned_minor: int = Field(0, description="Shares of sales past the settlement delay")
    pending_minor: int = Field(
        0, description="Shares of sales still within the settlement delay, less refunds of those sales"
    )
    refunded_minor: int = Field(0, description="Shares of sales past the delay taken back by refunds")
    paid_out_minor: int = Field(0, description="Transferred to the builder")
    in_transit_minor: int = Field(0, description="Payouts started, not yet confirmed")
    available_minor: int = Field(0, description="What the next distribution would pay")
    balance_minor: int = Field(0, description="Everything the platform owes the builder")
    sales_count: int = 0
    refunds_count: int = 0


class SeriesPoint(Schema):
    period_start: datetime = Field(description="Start of the UTC day, ISO week (Monday) or month")
    currency: str
    sales_count: int
    refunds_count: int
    gross_minor: int
    builder_share_minor: int
    refunded_builder_share_minor: int


class UserSeriesPoint(SeriesPoint):
    paid_out_minor: int


class UserRevenue(Schema):
    user_id: UUID
    period: Period
    from_: datetime | None = Field(alias="from")
    to: datetime | None
    totals: list[BalanceTotals]
    series: list[UserSeriesPoint] = Field(description="Periods with activity only (UTC buckets)")


class ProjectRevenue(Schema):
    project_id: UUID
    builder_id: UUID
    period: Period
    from_: datetime | None = Field(alias="from")
    to: datetime | None
    purchases_count: int = Field(description="Completed purchases, free ones included (refunded excluded)")
    totals: list[SplitTotals]
    series: list[SeriesPoint] = Field(description="Periods with activity only (UTC buckets)")
