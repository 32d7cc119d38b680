"""The analytics endpoints' shared query parameters, parsed and checked once."""

import functools
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, cast, get_args
from urllib.parse import parse_qsl
from uuid import UUID

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
    return checked_report(start, end, granularity, currency, limit)


def checked_report(
    start: date | None,
    end: date | None,
    granularity: Granularity,
    currency: str,
    limit: int,
    *,
    today: date | None = None,
) -> ReportQuery:
    """The defaults and range checks of :func:`report_query`, for values already parsed."""
    end = end or today or datetime.now(UTC).date()
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


# --- the cached answers' fast path ---------------------------------------------------------------

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CURRENCY = re.compile(r"[a-zA-Z]{3}")
_LIMIT = re.compile(r"[1-9][0-9]{0,2}")
_GRANULARITIES: frozenset[str] = frozenset(get_args(Granularity))
_LEADERBOARDS: frozenset[str] = frozenset(get_args(LeaderboardGrain))


def plain_uuid(value: str) -> UUID | None:
    """``value`` if it is a UUID in canonical form (lower case, hyphenated), else None."""
    try:
        parsed = UUID(value)
    except ValueError:
        return None
    return parsed if str(parsed) == value else None


def plain_report(
    query_string: str, ids: tuple[str, ...] = (), *, leaderboard: bool = False
) -> tuple[ReportQuery, tuple[UUID | None, ...]] | None:
    """The report query and the optional id parameters named by ``ids`` (in that order) of a
    query string written the plain way, as :func:`report_query` (with ``leaderboard``:
    :func:`platform_query`) reads it; None for any other spelling (a parameter given twice or
    empty, a day not ``YYYY-MM-DD``, a number or id not in its canonical form, a period the
    checks refuse), which the route's own parsing then takes, answering 422 where it must.
    Other parameters are ignored, as the routes ignore them."""
    return _plain_report(query_string, ids, leaderboard, datetime.now(UTC).date())


# Dashboards repeat the same few query strings: remembered per day (the default period ends today).
@functools.lru_cache(maxsize=1024)
def _plain_report(
    query_string: str, ids: tuple[str, ...], leaderboard: bool, today: date
) -> tuple[ReportQuery, tuple[UUID | None, ...]] | None:
    values: dict[str, str] = {}
    for name, value in parse_qsl(query_string, keep_blank_values=True):
        if name in values:
            return None
        values[name] = value
    try:
        start = _plain_day(values.get("from"))
        end = _plain_day(values.get("to"))
    except ValueError:
        return None
    granularity = values.get("granularity", "day")
    currency = values.get("currency", "usd")
    limit = values.get("limit", "10")
    grain = values.get("leaderboard", "all_time") if leaderboard else "all_time"
    if (
        granularity not in _GRANULARITIES
        or not _CURRENCY.fullmatch(currency)
        or not _LIMIT.fullmatch(limit)
        or not 1 <= int(limit) <= 100
        or grain not in _LEADERBOARDS
    ):
        return None
    found: list[UUID | None] = []
    for name in ids:
        raw = values.get(name)
        found.append(None if raw is None else plain_uuid(raw))
        if raw is not None and found[-1] is None:
            return None
    try:
        q = checked_report(start, end, cast(Granularity, granularity), currency, int(limit), today=today)
    except ValidationFailed:
        return None
    return replace(q, leaderboard=cast(LeaderboardGrain, grain)), tuple(found)


def _plain_day(value: str | None) -> date | None:
    if value is None:
        return None
    if not _DAY.fullmatch(value):
        raise ValueError(value)
    return date.fromisoformat(value)
