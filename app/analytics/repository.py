"""SQL over the published marts (``docs/data-platform.md``), plus the one Postgres query that
names the users and projects a response mentions.

Every mart method takes a DuckDB cursor and runs in a worker thread (``ServedVersion.run``).
Ids are compared and read as text, so the marts may type them ``UUID`` or ``VARCHAR``.
Daily marts are summed over the range (and ``date_trunc``-ed for a series, so a week or month
only counts its days inside the range); distinct counts (sessions, visitors, active users) come
from the pre-computed rows of the asked grain, because distinct counts of days do not add up to
a week's.

Ids are read with :func:`uuid_or_none`: a NULL or malformed id (the marts do not check them)
never fails a request. Lists keyed by an id (top projects, widgets, customers, leaderboards)
leave such rows out; ids that only describe a row (a widget's project or end user) become None.
"""

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from duckdb import DuckDBPyConnection
from sqlalchemy import literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from app.analytics.schemas import ReportQuery
from app.models import Project, User

logger = logging.getLogger("bazaar.analytics")

Cursor = DuckDBPyConnection
Filters = Mapping[str, UUID | None]
Row = tuple[Any, ...]

REVENUE_SUMS = (
    "sales",
    "gross_minor",
    "processor_fee_minor",
    "platform_fee_minor",
    "builder_share_minor",
    "refunds",
    "refunded_gross_minor",
    "net_gross_minor",
    "net_builder_share_minor",
)
USAGE_SUMS = ("impressions", "opens", "messages", "tokens")
PAYOUT_SUMS = (
    "payouts_created",
    "created_minor",
    "payouts_paid",
    "paid_minor",
    "payouts_failed",
    "failed_minor",
)
MONEY_SUMS = (
    "gmv_minor",
    "refunded_minor",
    "processor_fees_minor",
    "platform_fees_minor",
    "billing_revenue_minor",
    "net_revenue_minor",
    "payouts_paid_minor",
)
ACTIVITY_SUMS = ("signups", "builder_signups", "end_user_signups", "purchases", "refunds", "listing_views")
BOARDS = ("builders_by_revenue", "projects_by_purchases", "projects_by_usage", "widgets_by_usage")
# The marts of `chat.message`; a version published before they existed has neither.
LLM_MARTS = ("llm_usage_daily", "fct_chat_messages")
LLM_COUNTS = ("answers", "input_tokens", "output_tokens", "unpriced_answers", "tool_calls")
LLM_TIMINGS = ("latency_p50_ms", "latency_p95_ms", "first_token_p50_ms", "first_token_p95_ms")


def _sums(columns: Sequence[str]) -> str:
    return ", ".join(f"coalesce(sum({c}), 0)" for c in columns)


def _where(filters: Filters) -> tuple[str, list[Any]]:
    """``AND`` conditions for the filters that are set (column names are constants of this module)."""
    sql, params = "", []
    for column, value in filters.items():
        if value is not None:
            sql += f" AND CAST({column} AS VARCHAR) = ?"
            params.append(str(value))
    return sql, params


def _record(columns: Sequence[str], row: Sequence[Any] | None) -> dict[str, int]:
    if row is None:
        return dict.fromkeys(columns, 0)
    return {c: int(v or 0) for c, v in zip(columns, row, strict=True)}


def uuid_or_none(value: Any) -> UUID | None:
    """The UUID a mart holds, or None for NULL or anything that is not a UUID."""
    if value is None or isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        logger.debug("not a UUID in the marts: %r", value)
        return None


def _llm_sums() -> str:
    """SQL: the additive LLM columns of ``llm_usage_daily`` summed (the cost stays DECIMAL)."""
    counts = ", ".join(f"coalesce(sum({c}), 0) AS {c}" for c in LLM_COUNTS)
    return f"{counts}, coalesce(sum(cost_usd), 0) AS cost_usd"


# Conversations and latency percentiles over a range, from one row per answer: neither adds up
# across days. Percentiles are interpolated and rounded to the millisecond.
_LLM_TIMING_SQL = (
    "count(DISTINCT chat_id) AS conversations, "
    "CAST(round(quantile_cont(latency_ms, 0.5)) AS BIGINT) AS latency_p50_ms, "
    "CAST(round(quantile_cont(latency_ms, 0.95)) AS BIGINT) AS latency_p95_ms, "
    "CAST(round(quantile_cont(first_token_ms, 0.5)) AS BIGINT) AS first_token_p50_ms, "
    "CAST(round(quantile_cont(first_token_ms, 0.95)) AS BIGINT) AS first_token_p95_ms"
)


def _llm_record(row: Sequence[Any]) -> dict[str, Any]:
    """LLM numbers from ``(counts..., cost, conversations, timings...)``: counts as ints, the cost
    as an exact Decimal, timings None when nothing was measured."""
    counts = _record(LLM_COUNTS, row[: len(LLM_COUNTS)])
    cost, conversations = row[len(LLM_COUNTS)], row[len(LLM_COUNTS) + 1]
    timings = row[len(LLM_COUNTS) + 2 :]
    return {
        **counts,
        "cost_usd": Decimal(cost or 0),
        "conversations": int(conversations or 0),
        **{
            name: None if value is None else int(value)
            for name, value in zip(LLM_TIMINGS, timings, strict=True)
        },
    }


def _is_uuid(column: str) -> str:
    """SQL: ``column`` holds a UUID (so a ``LIMIT`` counts only rows that can be served)."""
    return f"TRY_CAST(CAST({column} AS VARCHAR) AS UUID) IS NOT NULL"


@dataclass(frozen=True)
class WidgetOwners:
    """Who a widget belongs to, as the marts record it: an id is None when its rows name no
    such id or several (``ambiguous``: more than one project, builder or end user)."""

    project_id: UUID | None
    builder_id: UUID | None
    end_user_id: UUID | None
    ambiguous: bool = False


def period_of(grain: str, day: date) -> date:
    """The first day of the ``grain`` period containing ``day`` (ISO weeks start on Monday)."""
    if grain == "all_time":
        return date(1970, 1, 1)
    if grain == "week":
        return date.fromordinal(day.toordinal() - day.weekday())
    if grain == "month":
        return day.replace(day=1)
    return day


class MartsRepository:
    # --- revenue ---------------------------------------------------------------------------

    def revenue_totals(self, cur: Cursor, q: ReportQuery, filters: Filters) -> dict[str, int]:
        where, params = _where(filters)
        row = cur.execute(
            f"SELECT {_sums(REVENUE_SUMS)} FROM marts.revenue_daily "
            f"WHERE day BETWEEN ? AND ? AND currency = ?{where}",
            [q.start, q.end, q.currency, *params],
        ).fetchone()
        return _record(REVENUE_SUMS, row)

    def revenue_series(self, cur: Cursor, q: ReportQuery, filters: Filters) -> list[dict[str, Any]]:
        where, params = _where(filters)
        rows = cur.execute(
            f"SELECT date_trunc(?, day)::DATE AS period, {_sums(REVENUE_SUMS)} FROM marts.revenue_daily "
            f"WHERE day BETWEEN ? AND ? AND currency = ?{where} GROUP BY period ORDER BY period",
            [q.granularity, q.start, q.end, q.currency, *params],
        ).fetchall()
        return [{"period_start": r[0], **_record(REVENUE_SUMS, r[1:])} for r in rows]

    def revenue_by_project(self, cur: Cursor, q: ReportQuery, filters: Filters) -> list[dict[str, Any]]:
        where, params = _where(filters)
        rows = cur.execute(
            "SELECT project_id, coalesce(sum(sales), 0), coalesce(sum(refunds), 0), "
            "coalesce(sum(net_gross_minor), 0), coalesce(sum(net_builder_share_minor), 0) "
            f"FROM marts.revenue_daily WHERE day BETWEEN ? AND ? AND currency = ?{where} "
            f"AND {_is_uuid('project_id')} "
            "GROUP BY project_id ORDER BY 4 DESC, 2 DESC, CAST(project_id AS VARCHAR) LIMIT ?",
            [q.start, q.end, q.currency, *params, q.limit],
        ).fetchall()
        return [
            {
                "project_id": project_id,
                "sales": int(r[1]),
                "refunds": int(r[2]),
                "net_gross_minor": int(r[3]),
                "net_builder_share_minor": int(r[4]),
            }
            for r in rows
            if (project_id := uuid_or_none(r[0])) is not None
        ]

    def payout_totals(self, cur: Cursor, q: ReportQuery, builder_id: UUID | None) -> dict[str, int]:
        where, params = _where({"builder_id": builder_id})
        row = cur.execute(
            f"SELECT {_sums(PAYOUT_SUMS)} FROM marts.payouts_daily "
            f"WHERE day BETWEEN ? AND ? AND currency = ?{where}",
            [q.start, q.end, q.currency, *params],
        ).fetchone()
        return _record(PAYOUT_SUMS, row)

    def purchases_by_buyer(
        self, cur: Cursor, q: ReportQuery, builder_id: UUID
    ) -> dict[UUID, tuple[int, int]]:
        """(purchases not refunded, what they paid) per buyer of ``builder_id``'s projects."""
        rows = cur.execute(
            "SELECT buyer_id, count(*), coalesce(sum(gross_minor), 0) FROM marts.fct_revenue_splits "
            "WHERE completed_day BETWEEN ? AND ? AND currency = ? AND NOT coalesce(is_refunded, false) "
            "AND CAST(builder_id AS VARCHAR) = ? GROUP BY buyer_id",
            [q.start, q.end, q.currency, str(builder_id)],
        ).fetchall()
        out: dict[UUID, tuple[int, int]] = {}
        for r in rows:
            buyer = uuid_or_none(r[0])
            if buyer is not None:
                count, spent = out.get(buyer, (0, 0))
                out[buyer] = (count + int(r[1]), spent + int(r[2]))
        return out

    def spend(self, cur: Cursor, q: ReportQuery, buyer_id: UUID) -> dict[str, int]:
        columns = ("purchases", "spend_minor", "refunds", "refunded_minor")
        row = cur.execute(
            f"SELECT {_sums(columns)} FROM marts.end_user_spend_daily "
            "WHERE day BETWEEN ? AND ? AND currency = ? AND CAST(buyer_id AS VARCHAR) = ?",
            [q.start, q.end, q.currency, str(buyer_id)],
        ).fetchone()
        return _record(columns, row)

    # --- usage -----------------------------------------------------------------------------

    def usage_totals(self, cur: Cursor, q: ReportQuery, filters: Filters) -> dict[str, int]:
        where, params = _where(filters)
        row = cur.execute(
            f"SELECT {_sums(USAGE_SUMS)} FROM marts.usage_by_period "
            f"WHERE grain = 'day' AND period_start BETWEEN ? AND ?{where}",
            [q.start, q.end, *params],
        ).fetchone()
        return _record(USAGE_SUMS, row)

    def usage_series(self, cur: Cursor, q: ReportQuery, filters: Filters) -> list[dict[str, Any]]:
        """Per period of the asked grain that overlaps the range (the first may start before it).
        Counts are the period's days inside the range; sessions and visitors the period's own."""
        where, params = _where(filters)
        distinct = ("sessions", "visitors")
        sums = ", ".join(f"s.{c}" for c in USAGE_SUMS)
        rows = cur.execute(
            "WITH s AS ("
            f"SELECT date_trunc(?, period_start)::DATE AS period, "
            f"{', '.join(f'sum({c}) AS {c}' for c in USAGE_SUMS)} FROM marts.usage_by_period "
            f"WHERE grain = 'day' AND period_start BETWEEN ? AND ?{where} GROUP BY period), "
            "g AS ("
            f"SELECT period_start::DATE AS period, {', '.join(f'sum({c}) AS {c}' for c in distinct)} "
            f"FROM marts.usage_by_period WHERE grain = ? AND period_start BETWEEN ? AND ?{where} "
            "GROUP BY period) "
            f"SELECT coalesce(s.period, g.period) AS period, {sums}, g.sessions, g.visitors "
            "FROM s FULL OUTER JOIN g ON s.period = g.period ORDER BY period",
            [
                q.granularity,
                q.start,
                q.end,
                *params,
                q.granularity,
                period_of(q.granularity, q.start),
                q.end,
                *params,
            ],
        ).fetchall()
        return [{"period_start": r[0], **_record((*USAGE_SUMS, *distinct), r[1:])} for r in rows]

    def usage_by(
        self, cur: Cursor, q: ReportQuery, filters: Filters, keys: Sequence[str], *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Usage over the range grouped by ``keys`` (id columns), most messages first. Rows whose
        first key is not a UUID are left out; the other keys may be None."""
        where, params = _where(filters)
        group = ", ".join(keys)
        rows = cur.execute(
            f"SELECT {group}, {_sums(USAGE_SUMS)} FROM marts.usage_by_period "
            f"WHERE grain = 'day' AND period_start BETWEEN ? AND ?{where} AND {_is_uuid(keys[0])} "
            f"GROUP BY {group} ORDER BY {len(keys) + 3} DESC, {len(keys) + 4} DESC, "
            f"CAST({keys[0]} AS VARCHAR) LIMIT ?",
            [q.start, q.end, *params, limit if limit is not None else q.limit],
        ).fetchall()
        out = []
        for r in rows:
            ids = {k: uuid_or_none(v) for k, v in zip(keys, r[: len(keys)], strict=True)}
            if ids[keys[0]] is not None:
                out.append({**ids, **_record(USAGE_SUMS, r[len(keys) :])})
        return out

    def messages_in_month(self, cur: Cursor, month: date, end_user_id: UUID) -> int:
        row = cur.execute(
            "SELECT coalesce(sum(messages), 0) FROM marts.usage_by_period "
            "WHERE grain = 'month' AND period_start = ? AND CAST(end_user_id AS VARCHAR) = ?",
            [month, str(end_user_id)],
        ).fetchone()
        return int(row[0]) if row else 0

    def widget_owners(self, cur: Cursor, widget_id: UUID) -> WidgetOwners | None:
        """Project, builder and end user of a widget that has any usage in the marts. Each is
        None when its rows name none or several (then ``ambiguous``); NULLs name nobody."""
        rows = cur.execute(
            "SELECT CAST(project_id AS VARCHAR) AS p, CAST(builder_id AS VARCHAR) AS b, "
            "CAST(end_user_id AS VARCHAR) AS e, max(period_start) AS last FROM marts.usage_by_period "
            "WHERE CAST(widget_id AS VARCHAR) = ? GROUP BY p, b, e ORDER BY last DESC, p, b, e",
            [str(widget_id)],
        ).fetchall()
        if not rows:
            return None

        named = [{r[i] for r in rows if r[i] is not None} for i in range(3)]
        p, b, e = (uuid_or_none(next(iter(ids))) if len(ids) == 1 else None for ids in named)
        return WidgetOwners(p, b, e, ambiguous=any(len(ids) > 1 for ids in named))

    # --- LLM answers (chat.message) ---------------------------------------------------------

    def has_llm_marts(self, cur: Cursor) -> bool:
        """Whether this version has the LLM marts (one published before them has not)."""
        row = cur.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'marts' AND table_name IN (?, ?)",
            list(LLM_MARTS),
        ).fetchone()
        return bool(row and row[0] == len(LLM_MARTS))

    def llm_totals(self, cur: Cursor, q: ReportQuery, filters: Filters) -> dict[str, Any]:
        """Answers, tokens, cost and tool calls summed from the daily rows, split by channel;
        conversations and latency percentiles over the range from the answers themselves."""
        where, params = _where(filters)
        row = cur.execute(
            f"WITH sums AS (SELECT {_llm_sums()}, "
            "coalesce(sum(answers) FILTER (WHERE channel = 'studio'), 0) AS studio_answers, "
            "coalesce(sum(answers) FILTER (WHERE channel = 'widget'), 0) AS widget_answers "
            f"FROM marts.llm_usage_daily WHERE day BETWEEN ? AND ?{where}), "
            f"timing AS (SELECT {_LLM_TIMING_SQL} FROM marts.fct_chat_messages "
            f"WHERE day BETWEEN ? AND ?{where}) "
            f"SELECT {', '.join(LLM_COUNTS)}, cost_usd, conversations, {', '.join(LLM_TIMINGS)}, "
            "studio_answers, widget_answers FROM sums CROSS JOIN timing",
            [q.start, q.end, *params, q.start, q.end, *params],
        ).fetchone()
        if row is None:
            return {}
        return {
            **_llm_record(row[:-2]),
            "studio_answers": int(row[-2] or 0),
            "widget_answers": int(row[-1] or 0),
        }

    def answers_totals(self, cur: Cursor, q: ReportQuery, filters: Filters) -> dict[str, Any]:
        """LLM numbers straight from the answers (``fct_chat_messages``): for filters the daily
        mart does not carry, such as one widget."""
        where, params = _where(filters)
        row = cur.execute(
            "SELECT count(*) AS answers, coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), "
            "count(*) FILTER (WHERE cost_usd IS NULL), coalesce(sum(tool_calls), 0), "
            f"coalesce(sum(cost_usd), 0), {_LLM_TIMING_SQL}, "
            "count(*) FILTER (WHERE channel = 'studio'), count(*) FILTER (WHERE channel = 'widget') "
            f"FROM marts.fct_chat_messages WHERE day BETWEEN ? AND ?{where}",
            [q.start, q.end, *params],
        ).fetchone()
        if row is None:
            return {}
        return {
            **_llm_record(row[:-2]),
            "studio_answers": int(row[-2] or 0),
            "widget_answers": int(row[-1] or 0),
        }

    def llm_by_model(self, cur: Cursor, q: ReportQuery, filters: Filters) -> list[dict[str, Any]]:
        """Per provider, model and channel, most answers first (``q.limit`` of them)."""
        where, params = _where(filters)
        keys = "provider, model, channel"
        rows = cur.execute(
            f"WITH sums AS (SELECT {keys}, {_llm_sums()} FROM marts.llm_usage_daily "
            f"WHERE day BETWEEN ? AND ?{where} GROUP BY {keys}), "
            f"timing AS (SELECT {keys}, {_LLM_TIMING_SQL} FROM marts.fct_chat_messages "
            f"WHERE day BETWEEN ? AND ?{where} GROUP BY {keys}) "
            f"SELECT s.provider, s.model, s.channel, {', '.join(f's.{c}' for c in LLM_COUNTS)}, s.cost_usd, "
            f"t.conversations, {', '.join(f't.{c}' for c in LLM_TIMINGS)} "
            "FROM sums s LEFT JOIN timing t "
            "ON s.provider = t.provider AND s.model = t.model AND s.channel = t.channel "
            "ORDER BY s.answers DESC, s.output_tokens DESC, s.provider, s.model, s.channel LIMIT ?",
            [q.start, q.end, *params, q.start, q.end, *params, q.limit],
        ).fetchall()
        return [
            {"provider": str(r[0]), "model": str(r[1]), "channel": str(r[2]), **_llm_record(r[3:])}
            for r in rows
        ]

    def llm_series(self, cur: Cursor, q: ReportQuery, filters: Filters) -> list[dict[str, Any]]:
        """Additive LLM numbers per period (only the period's days inside the range)."""
        where, params = _where(filters)
        rows = cur.execute(
            f"SELECT date_trunc(?, day)::DATE AS period, {_llm_sums()}, "
            "coalesce(sum(answers) FILTER (WHERE channel = 'studio'), 0), "
            "coalesce(sum(answers) FILTER (WHERE channel = 'widget'), 0) "
            f"FROM marts.llm_usage_daily WHERE day BETWEEN ? AND ?{where} GROUP BY period ORDER BY period",
            [q.granularity, q.start, q.end, *params],
        ).fetchall()
        return [
            {
                "period_start": r[0],
                **_record(LLM_COUNTS, r[1 : 1 + len(LLM_COUNTS)]),
                "cost_usd": Decimal(r[1 + len(LLM_COUNTS)] or 0),
                "studio_answers": int(r[-2] or 0),
                "widget_answers": int(r[-1] or 0),
            }
            for r in rows
        ]

    # --- platform --------------------------------------------------------------------------

    def platform_money(self, cur: Cursor, q: ReportQuery) -> tuple[dict[str, int], list[Row]]:
        totals = cur.execute(
            f"SELECT {_sums(MONEY_SUMS)} FROM marts.platform_money_daily "
            "WHERE day BETWEEN ? AND ? AND currency = ?",
            [q.start, q.end, q.currency],
        ).fetchone()
        series = cur.execute(
            f"SELECT date_trunc(?, day)::DATE AS period, {_sums(MONEY_SUMS)} FROM marts.platform_money_daily "
            "WHERE day BETWEEN ? AND ? AND currency = ? GROUP BY period ORDER BY period",
            [q.granularity, q.start, q.end, q.currency],
        ).fetchall()
        return _record(MONEY_SUMS, totals), series

    def platform_activity(self, cur: Cursor, q: ReportQuery) -> tuple[dict[str, int], list[Row]]:
        totals = cur.execute(
            f"SELECT {_sums(ACTIVITY_SUMS)} FROM marts.platform_activity "
            "WHERE grain = 'day' AND period_start BETWEEN ? AND ?",
            [q.start, q.end],
        ).fetchone()
        # Counts: the period's days inside the range; active users: the period's own row.
        series = cur.execute(
            "WITH s AS (SELECT date_trunc(?, period_start)::DATE AS period, sum(signups) AS signups, "
            "sum(purchases) AS purchases, sum(refunds) AS refunds, sum(listing_views) AS views "
            "FROM marts.platform_activity WHERE grain = 'day' AND period_start BETWEEN ? AND ? "
            "GROUP BY period), "
            "g AS (SELECT period_start::DATE AS period, max(active_builders) AS builders, "
            "max(active_end_users) AS end_users FROM marts.platform_activity "
            "WHERE grain = ? AND period_start BETWEEN ? AND ? GROUP BY period) "
            "SELECT coalesce(s.period, g.period) AS period, s.signups, s.purchases, s.refunds, "
            "g.builders, g.end_users, "
            "CASE WHEN s.views > 0 THEN coalesce(s.purchases, 0) / s.views END "
            "FROM s FULL OUTER JOIN g ON s.period = g.period ORDER BY period",
            [q.granularity, q.start, q.end, q.granularity, period_of(q.granularity, q.start), q.end],
        ).fetchall()
        return _record(ACTIVITY_SUMS, totals), series

    def leaderboards(self, cur: Cursor, q: ReportQuery) -> tuple[date, dict[str, list[Row]]]:
        period = period_of(q.leaderboard, q.end)
        rows = cur.execute(
            "SELECT board, rank, entity_id, value FROM marts.leaderboards "
            "WHERE grain = ? AND period_start = ? AND rank <= ? "
            "AND (currency = ? OR (board <> 'builders_by_revenue' AND currency = '')) ORDER BY board, rank",
            [q.leaderboard, period, q.limit, q.currency],
        ).fetchall()
        boards: dict[str, list[Row]] = {board: [] for board in BOARDS}
        for board, rank, entity, value in rows:
            entity_id = uuid_or_none(entity)
            if board in boards and entity_id is not None:
                boards[board].append((int(rank), entity_id, int(value or 0)))
        return period, boards

    # --- marketplace -----------------------------------------------------------------------

    def listing_counts(self, cur: Cursor, builder_id: UUID | None) -> dict[str, int]:
        where, params = _where({"builder_id": builder_id})
        rows = cur.execute(
            "SELECT listing_status, count(*) FROM marts.dim_projects "
            f"WHERE listing_id IS NOT NULL{where} GROUP BY listing_status",
            params,
        ).fetchall()
        return {str(status): int(n) for status, n in rows if status is not None}

    def market_totals(self, cur: Cursor, q: ReportQuery, builder_id: UUID | None) -> list[Row]:
        """Per currency: sales, refunds, net gross, refunded gross, platform fee, builder share."""
        where, params = _where({"builder_id": builder_id})
        return cur.execute(
            "SELECT currency, coalesce(sum(sales), 0), coalesce(sum(refunds), 0), "
            "coalesce(sum(net_gross_minor), 0), coalesce(sum(refunded_gross_minor), 0), "
            "coalesce(sum(platform_fee_minor - refunded_platform_fee_minor), 0), "
            "coalesce(sum(net_builder_share_minor), 0) "
            f"FROM marts.revenue_daily WHERE day BETWEEN ? AND ?{where} GROUP BY currency ORDER BY currency",
            [q.start, q.end, *params],
        ).fetchall()

    def completed_purchases(self, cur: Cursor, q: ReportQuery, builder_id: UUID | None) -> dict[str, int]:
        """Per currency: purchases completed in the range and not refunded (as of the version)."""
        where, params = _where({"builder_id": builder_id})
        rows = cur.execute(
            "SELECT currency, count(*) FROM marts.fct_revenue_splits "
            "WHERE completed_day BETWEEN ? AND ? AND NOT coalesce(is_refunded, false)"
            f"{where} GROUP BY currency",
            [q.start, q.end, *params],
        ).fetchall()
        return {str(currency): int(n) for currency, n in rows if currency is not None}

    def top_listings(self, cur: Cursor, q: ReportQuery, builder_id: UUID | None) -> list[Row]:
        """(project, listing, currency, purchases not refunded, net gross), best sellers first."""
        where, params = _where({"r.builder_id": builder_id})
        return cur.execute(
            "SELECT r.project_id, any_value(d.listing_id), r.currency, "
            "coalesce(sum(r.sales - r.refunds), 0) AS purchases, "
            "coalesce(sum(r.net_gross_minor), 0) AS gross "
            "FROM marts.revenue_daily r LEFT JOIN marts.dim_projects d "
            "ON CAST(d.project_id AS VARCHAR) = CAST(r.project_id AS VARCHAR) "
            f"WHERE r.day BETWEEN ? AND ?{where} AND {_is_uuid('r.project_id')} "
            "GROUP BY r.project_id, r.currency "
            "ORDER BY purchases DESC, gross DESC, CAST(r.project_id AS VARCHAR) LIMIT ?",
            [q.start, q.end, *params, q.limit],
        ).fetchall()

    def market_series(self, cur: Cursor, q: ReportQuery, builder_id: UUID | None) -> list[Row]:
        where, params = _where({"builder_id": builder_id})
        return cur.execute(
            "SELECT date_trunc(?, day)::DATE AS period, currency, coalesce(sum(sales - refunds), 0), "
            "coalesce(sum(net_gross_minor), 0) FROM marts.revenue_daily "
            f"WHERE day BETWEEN ? AND ?{where} GROUP BY period, currency ORDER BY period, currency",
            [q.granularity, q.start, q.end, *params],
        ).fetchall()


class NamesRepository:
    async def names(
        self, db: AsyncSession, user_ids: Iterable[UUID], project_ids: Iterable[UUID]
    ) -> dict[UUID, str]:
        """Names of users and projects, in one query (ids are UUIDv7, never shared by the two)."""
        users, projects = list(set(user_ids)), list(set(project_ids))
        if not users and not projects:
            return {}
        stmt = union_all(
            select(User.id, User.name, literal("user")).where(User.id.in_(users)),
            select(Project.id, Project.name, literal("project")).where(Project.id.in_(projects)),
        )
        return {row[0]: row[1] for row in (await db.execute(stmt)).all()}


marts_repository = MartsRepository()
names_repository = NamesRepository()
