"""Analytics responses. Every one says which published warehouse version it reflects."""

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, PlainSerializer

from app.core.schemas import Schema

Granularity = Literal["day", "week", "month"]
LeaderboardGrain = Literal["day", "week", "month", "all_time"]


def _decimal_text(amount: Decimal) -> str:
    """Exact and without padding: ``0.004500000000`` -> ``"0.0045"``, ``0E-12`` -> ``"0"``."""
    return format(amount.normalize(), "f")


# US dollars as an exact decimal string on the wire (`chat.message` costs are fractions of a cent).
Usd = Annotated[Decimal, PlainSerializer(_decimal_text, return_type=str, when_used="json")]


class WarehouseVersion(Schema):
    version: str = Field(description="The published marts version (`YYYYMMDDTHHMMSSZ-<hex>`)")
    as_of: datetime | None = Field(description="Newest landed event the version was built from")
    published_at: datetime | None


class Report(Schema):
    """What every analytics response starts with."""

    warehouse: WarehouseVersion | None = Field(
        description="The version these numbers come from; null before the first publish (all zeros)"
    )
    from_: date = Field(alias="from")
    to: date
    granularity: Granularity
    currency: str


# --- money and usage blocks --------------------------------------------------------------------


class RevenueTotals(Schema):
    sales: int = 0
    gross_minor: int = 0
    processor_fee_minor: int = 0
    platform_fee_minor: int = 0
    builder_share_minor: int = 0
    refunds: int = 0
    refunded_gross_minor: int = 0
    net_gross_minor: int = Field(0, description="Gross minus refunded gross")
    net_builder_share_minor: int = 0


class RevenuePoint(RevenueTotals):
    period_start: date


class PayoutTotals(Schema):
    payouts_created: int = 0
    created_minor: int = 0
    payouts_paid: int = 0
    paid_minor: int = 0
    payouts_failed: int = 0
    failed_minor: int = 0


class UsageTotals(Schema):
    impressions: int = 0
    opens: int = 0
    messages: int = 0
    tokens: int = 0


class UsagePoint(UsageTotals):
    period_start: date
    sessions: int = Field(0, description="Distinct sessions in the period")
    visitors: int = Field(0, description="Distinct visitors in the period")


class ProjectRevenue(Schema):
    project_id: UUID
    name: str | None
    sales: int
    refunds: int
    net_gross_minor: int
    net_builder_share_minor: int


class ProjectUsage(UsageTotals):
    project_id: UUID
    name: str | None


class WidgetUsage(UsageTotals):
    widget_id: UUID
    project_id: UUID | None = Field(description="Null when the marts hold no (valid) project id")
    end_user_id: UUID | None = Field(description="Null when the marts hold no (valid) end user id")


# --- LLM answers (chat.message) ------------------------------------------------------------------


class LlmUsage(Schema):
    """What a project's LLM answered: counted by the server, the truth for tokens and cost
    (widget beacons' `messages` and `tokens` are the client's view of widget chats)."""

    answers: int = Field(0, description="Assistant answers, builder studio and widgets")
    conversations: int = Field(0, description="Distinct chats answered in the range")
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Usd = Field(
        Decimal(0),
        description="US dollars (a decimal string) of the answers whose model has a price; "
        "`unpricedAnswers` are not in it",
    )
    unpriced_answers: int = Field(0, description="Answers whose model had no configured price")
    tool_calls: int = 0
    latency_p50_ms: int | None = Field(None, description="Median time to the complete answer")
    latency_p95_ms: int | None = None
    first_token_p50_ms: int | None = Field(
        None, description="Median time to the first streamed token; null when nothing was streamed"
    )
    first_token_p95_ms: int | None = None


class LlmTotals(LlmUsage):
    studio_answers: int = Field(0, description="Answers in the builder studio (builder test chats)")
    widget_answers: int = Field(0, description="Answers to widget visitors")


class LlmModelUsage(LlmUsage):
    provider: str
    model: str
    channel: str = Field(description="`studio` (builder test chats) or `widget`")


class LlmPoint(Schema):
    period_start: date
    answers: int = 0
    studio_answers: int = 0
    widget_answers: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Usd = Decimal(0)
    unpriced_answers: int = 0
    tool_calls: int = 0


class LlmSection(Schema):
    """Tokens, cost, answers and latency of LLM answers over the range (cost in USD whatever
    `currency` says)."""

    totals: LlmTotals = Field(default_factory=LlmTotals)
    by_model: list[LlmModelUsage] = Field(
        default_factory=list, description="Per provider, model and channel, most answers first"
    )
    series: list[LlmPoint] = Field(default_factory=list)


# --- platform ----------------------------------------------------------------------------------


class PlatformKpis(Schema):
    gmv_minor: int = Field(0, description="Gross of settled purchases")
    refunded_minor: int = 0
    processor_fees_minor: int = 0
    platform_fees_minor: int = Field(0, description="Net of refunds")
    billing_revenue_minor: int = 0
    net_revenue_minor: int = Field(0, description="Platform fees + billing revenue - fee expense")
    payouts_paid_minor: int = 0
    signups: int = 0
    builder_signups: int = 0
    end_user_signups: int = 0
    purchases: int = 0
    refunds: int = 0
    active_builders: int = Field(0, description="Distinct active builders in the last period of the series")
    active_end_users: int = Field(0, description="Distinct active end users in the last period of the series")
    listing_views: int = 0
    conversion_rate: float | None = Field(None, description="Purchases per listing view; null without views")


class PlatformPoint(Schema):
    period_start: date
    gmv_minor: int = 0
    net_revenue_minor: int = 0
    platform_fees_minor: int = 0
    signups: int = 0
    purchases: int = 0
    refunds: int = 0
    active_builders: int = 0
    active_end_users: int = 0
    conversion_rate: float | None = None


class LeaderboardEntry(Schema):
    rank: int
    id: UUID
    name: str | None = Field(description="User or project name; null for widgets")
    value: int = Field(description="Minor units for revenue boards, counts otherwise")


class Leaderboards(Schema):
    grain: LeaderboardGrain
    period_start: date = Field(description="The period ranked (1970-01-01 for all time)")
    builders_by_revenue: list[LeaderboardEntry]
    projects_by_purchases: list[LeaderboardEntry]
    projects_by_usage: list[LeaderboardEntry]
    widgets_by_usage: list[LeaderboardEntry]


class PlatformAnalytics(Report):
    kpis: PlatformKpis
    series: list[PlatformPoint]
    leaderboards: Leaderboards
    llm: LlmSection = Field(
        default_factory=LlmSection, description="Platform-wide LLM tokens, cost and latency by model"
    )


# --- one user ----------------------------------------------------------------------------------


class Customer(UsageTotals):
    user_id: UUID
    name: str | None
    purchases: int = 0
    spend_minor: int = 0


class BuilderSection(Schema):
    revenue: RevenueTotals
    payouts: PayoutTotals
    usage: UsageTotals
    series: list[RevenuePoint]
    projects: list[ProjectRevenue]
    customers: list[Customer] = Field(description="End users of the builder's projects, by messages")
    llm: LlmTotals = Field(
        default_factory=LlmTotals, description="LLM answers of the builder's projects, test chats included"
    )


class SpendTotals(Schema):
    purchases: int = 0
    spend_minor: int = 0
    refunds: int = 0
    refunded_minor: int = 0


class Quota(Schema):
    plan: str
    monthly_messages: int | None = Field(description="The plan's limit; null when unlimited")
    used_this_month: int
    remaining: int | None


class EndUserSection(Schema):
    spend: SpendTotals
    usage: UsageTotals
    series: list[UsagePoint]
    widgets: list[WidgetUsage]
    quota: Quota


class UserAnalytics(Report):
    user_id: UUID
    personas: list[str]
    builder: BuilderSection | None = Field(description="Present when the user is a builder")
    end_user: EndUserSection | None = Field(description="Present when the user is an end user")


# --- one project, one widget -------------------------------------------------------------------


class ProjectAnalytics(Report):
    project_id: UUID
    name: str
    revenue: RevenueTotals
    usage: UsageTotals
    revenue_series: list[RevenuePoint]
    usage_series: list[UsagePoint]
    widgets: list[WidgetUsage]
    llm: LlmSection = Field(
        default_factory=LlmSection,
        description="The project's LLM answers in the builder studio and its widgets",
    )


class WidgetQuota(Schema):
    """This month's quota of the widget's owner for its project (all their widgets of the
    project share it), read live from the OLTP counter, not from the warehouse."""

    month: str = Field(description="`YYYY-MM` (UTC)")
    limit: int | None = Field(description="Messages a month of the owner's plan; null: unlimited")
    used: int = Field(description="Visitor messages counted this month")
    remaining: int | None = Field(description="null when unlimited")
    percent: float | None = Field(
        description="`used` as a share of `limit`, one decimal; null when unlimited"
    )


class WidgetAnalytics(Report):
    widget_id: UUID
    project_id: UUID | None = Field(description="Null when the marts name no project, or several")
    end_user_id: UUID | None = Field(description="Null when the marts name no end user, or several")
    usage: UsageTotals = Field(description="What the widget's script reported (beacons): analytics")
    series: list[UsagePoint]
    llm: LlmTotals = Field(
        default_factory=LlmTotals,
        description="The answers the platform gave the widget's visitors (server-side: the billing "
        "truth for messages, tokens and cost)",
    )
    quota: WidgetQuota | None = Field(
        None, description="This month's quota, live (null for a widget only the marts know)"
    )


# --- revenue and usage reports -----------------------------------------------------------------


class RevenueAnalytics(Report):
    scope: Literal["platform", "builder"]
    builder_id: UUID | None
    project_id: UUID | None
    totals: RevenueTotals
    payouts: PayoutTotals | None = Field(description="Payouts of the builder (or platform); null per project")
    series: list[RevenuePoint]
    projects: list[ProjectRevenue]


class UsageAnalytics(Report):
    scope: Literal["platform", "builder", "end_user"]
    project_id: UUID | None
    totals: UsageTotals
    series: list[UsagePoint]
    projects: list[ProjectUsage]
    widgets: list[WidgetUsage]


# --- marketplace -------------------------------------------------------------------------------


class ListingCounts(Schema):
    pending_review: int = 0
    active: int = 0
    held: int = 0
    delisted: int = 0


class CurrencyTotals(Schema):
    currency: str
    completed: int = Field(
        description="Purchases completed in the range and not refunded (as of the served version); "
        "never negative"
    )
    refunded: int = Field(description="Refunds made in the range, whenever their purchase was completed")
    gross_minor: int = Field(description="What buyers paid for purchases not refunded")
    refunded_minor: int
    platform_fee_minor: int
    builder_share_minor: int


class TopListing(Schema):
    project_id: UUID
    listing_id: UUID | None
    title: str | None
    currency: str
    purchases: int
    gross_minor: int


class MarketPoint(Schema):
    period_start: date
    currency: str
    purchases: int
    gross_minor: int


class MarketplaceReport(Report):
    listings: ListingCounts
    totals: list[CurrencyTotals]
    top_listings: list[TopListing]
    series: list[MarketPoint]


@dataclass(frozen=True)
class ReportQuery:
    """The parsed common query parameters: an inclusive date range and how to slice it."""

    start: date
    end: date
    granularity: Granularity = "day"
    currency: str = "usd"
    limit: int = 10
    leaderboard: LeaderboardGrain = "all_time"

    def cache_key(self) -> str:
        return (
            f"{self.start.isoformat()}:{self.end.isoformat()}:{self.granularity}:{self.currency}:"
            f"{self.limit}:{self.leaderboard}"
        )
