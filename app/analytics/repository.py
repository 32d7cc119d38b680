"""SQL over the published marts (``docs/data-platform.md``), plus the one Postgres query that
names the users and projects a response mentions.

Every mart method takes a DuckDB cursor and runs in a worker thread (``ServedVersion.run``).
Ids are compared and read as text, so the marts may type them ``UUID`` or ``VARCHAR``.
Daily marts are summed over the range (and ``date_trunc``-ed for a series); distinct counts
(sessions, visitors, active users) come from the pre-computed rows of the asked grain, because
distinct counts of days do not add up to a week's.
"""

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any
from uuid import UUID

from duckdb import DuckDBPyConnection
from sqlalchemy import literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from app.analytics.schemas import ReportQuery
from app.models import Project, User

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


def _record(columns: Sequence[str], row: Row | None) -> dict[str, int]:
    if row is None:
        return dict.fromkeys(columns, 0)
    return {c: int(v or 0) for c, v in zip(columns, row, strict=True)}


def uuid_of(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


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
            "GROUP BY project_id ORDER BY 4 DESC, 2 DESC, CAST(project_id AS VARCHAR) LIMIT ?",
            [q.start, q.end, q.currency, *params, q.limit],
        ).fetchall()
        return [
            {
                "project_id": uuid_of(r[0]),
                "sales": int(r[1]),
                "refunds": int(r[2]),
                "net_gross_minor": int(r[3]),
                "net_builder_share_minor": int(r[4]),
            }
            for r in rows
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
        return {uuid_of(r[0]): (int(r[1]), int(r[2])) for r in rows}

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
        """Per period of the asked grain that overlaps the range (the first may start before it)."""
        where, params = _where(filters)
        columns = (*USAGE_SUMS, "sessions", "visitors")
        rows = cur.execute(
            f"SELECT period_start, {_sums(columns)} FROM marts.usage_by_period "
            f"WHERE grain = ? AND period_start BETWEEN ? AND ?{where} "
            "GROUP BY period_start ORDER BY period_start",
            [q.granularity, period_of(q.granularity, q.start), q.end, *params],
        ).fetchall()
        return [{"period_start": r[0], **_record(columns, r[1:])} for r in rows]

    def usage_by(
        self, cur: Cursor, q: ReportQuery, filters: Filters, keys: Sequence[str], *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Usage over the range grouped by ``keys`` (id columns), most messages first."""
        where, params = _where(filters)
        group = ", ".join(keys)
        rows = cur.execute(
            f"SELECT {group}, {_sums(USAGE_SUMS)} FROM marts.usage_by_period "
            f"WHERE grain = 'day' AND period_start BETWEEN ? AND ?{where} GROUP BY {group} "
            f"ORDER BY {len(keys) + 3} DESC, {len(keys) + 4} DESC, CAST({keys[0]} AS VARCHAR) LIMIT ?",
            [q.start, q.end, *params, limit if limit is not None else q.limit],
        ).fetchall()
        out = []
        for r in rows:
            ids = {k: uuid_of(v) for k, v in zip(keys, r[: len(keys)], strict=True) if v is not None}
            out.append({**ids, **_record(USAGE_SUMS, r[len(keys) :])})
        return out

    def messages_in_month(self, cur: Cursor, month: date, end_user_id: UUID) -> int:
        row = cur.execute(
            "SELECT coalesce(sum(messages), 0) FROM marts.usage_by_period "
            "WHERE grain = 'month' AND period_start = ? AND CAST(end_user_id AS VARCHAR) = ?",
            [month, str(end_user_id)],
        ).fetchone()
        return int(row[0]) if row else 0

    def widget_owners(self, cur: Cursor, widget_id: UUID) -> tuple[UUID, UUID, UUID] | None:
        """(project, builder, end user) of a widget that has any usage in the marts."""
        row = cur.execute(
            "SELECT project_id, builder_id, end_user_id FROM marts.usage_by_period "
            "WHERE CAST(widget_id AS VARCHAR) = ? LIMIT 1",
            [str(widget_id)],
        ).fetchone()
        if row is None:
            return None
        return uuid_of(row[0]), uuid_of(row[1]), uuid_of(row[2])

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
        series = cur.execute(
            "SELECT period_start, signups, purchases, refunds, active_builders, active_end_users, "
            "conversion_rate FROM marts.platform_activity "
            "WHERE grain = ? AND period_start BETWEEN ? AND ? ORDER BY period_start",
            [q.granularity, period_of(q.granularity, q.start), q.end],
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
            if board in boards:
                boards[board].append((int(rank), uuid_of(entity), int(value or 0)))
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

    def top_listings(self, cur: Cursor, q: ReportQuery, builder_id: UUID | None) -> list[Row]:
        """(project, listing, currency, purchases not refunded, net gross), best sellers first."""
        where, params = _where({"r.builder_id": builder_id})
        return cur.execute(
            "SELECT r.project_id, any_value(d.listing_id), r.currency, "
            "coalesce(sum(r.sales - r.refunds), 0) AS purchases, "
            "coalesce(sum(r.net_gross_minor), 0) AS gross "
            "FROM marts.revenue_daily r LEFT JOIN marts.dim_projects d "
            "ON CAST(d.project_id AS VARCHAR) = CAST(r.project_id AS VARCHAR) "
            f"WHERE r.day BETWEEN ? AND ?{where} GROUP BY r.project_id, r.currency "
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
