"""The analytics endpoints' shared query parameters, parsed and checked once."""

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Query

from app.analytics.schemas import Granularity, LeaderboardGrain, ReportQuery
from app.core.errors import ValidationFailed

DEFAULT_DAYS = 30
# Two years of days: a series of daily points stays a few hundred rows, and the marts keep
# daily grain, so a longer range is a full scan for a chart nobody can read.
MAX_DAYS = 731


async def report_query(
    start: Annotated[date | None, Query(alias="from", description="First day (UTC), inclusive")] = None,
    end: Annotated[
        date | None, Query(alias="to", description="Last day (UTC), inclusive; default today")
    ] = None,
    granularity: Annotated[
        Granularity, Query(description="Series points per day, ISO week or month")
    ] = "day",
    currency: Annotated[str, Query(pattern=r"^[a-zA-Z]{3}$", description="Money in this currency")] = "usd",
    limit: Annotated[int, Query(ge=1, le=100, description="Entries in each top list")] = 10,
) -> ReportQuery:
    """``from``..``to`` (default: the last 30 days up to today), at most two years."""
    end = end or datetime.now(UTC).date()
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise ValidationFailed(
            "`from` must not be after `to`",
            code="invalid_period",
            details={"from": start.isoformat(), "to": end.isoformat()},
        )
    if (end - start).days + 1 > MAX_DAYS:
        raise ValidationFailed(
            f"The period may span at most {MAX_DAYS} days",
            code="period_too_long",
            details={"from": start.isoformat(), "to": end.isoformat(), "maxDays": MAX_DAYS},
        )
    return ReportQuery(start=start, end=end, granularity=granularity, currency=currency.lower(), limit=limit)


Report = Annotated[ReportQuery, Depends(report_query)]


async def platform_query(
    q: Report,
    leaderboard: Annotated[
        LeaderboardGrain,
        Query(description="Leaderboards of the day, week or month containing `to`, or all time"),
    ] = "all_time",
) -> ReportQuery:
    return replace(q, leaderboard=leaderboard)


PlatformReport = Annotated[ReportQuery, Depends(platform_query)]
