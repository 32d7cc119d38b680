"""Analytics from the published marts: who may see what, and the shape of each report.

Every report is read from one published version (a lease held for the whole request) and is
cached under a key made of that version, the report, the caller's scope and the normalised
query: a new publish changes the version, so it needs no invalidation. Authorization always
runs before the cache is consulted. Reports are stored and answered as their JSON bytes; a route
whose caller's rights and key need no database (``cached_answer``) answers them without a lease,
a database session or a model.
"""

import functools
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any, Literal, TypeVar
from uuid import UUID

import orjson
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.analytics.repository import (
    Cursor,
    Filters,
    WidgetOwners,
    marts_repository,
    names_repository,
    period_of,
    uuid_or_none,
)
from app.analytics.schemas import (
    BuilderSection,
    CurrencyTotals,
    Customer,
    EndUserSection,
    LeaderboardEntry,
    Leaderboards,
    ListingCounts,
    LlmModelUsage,
    LlmPoint,
    LlmSection,
    LlmTotals,
    MarketplaceReport,
    MarketPoint,
    PayoutTotals,
    PlatformAnalytics,
    PlatformKpis,
    PlatformPoint,
    ProjectAnalytics,
    ProjectRevenue,
    ProjectUsage,
    Quota,
    ReportQuery,
    RevenueAnalytics,
    RevenuePoint,
    RevenueTotals,
    SpendTotals,
    TopListing,
    UsageAnalytics,
    UsagePoint,
    UsageTotals,
    UserAnalytics,
    WarehouseVersion,
    WidgetAnalytics,
    WidgetQuota,
    WidgetUsage,
)
from app.auth.permissions import Perm
from app.core.errors import Forbidden, NotFound
from app.core.principal import Principal
from app.core.runtime import Runtime
from app.core.warehouse import ServedVersion
from app.core.warehouse_layout import WarehouseLayout
from app.projects.service import project_service
from app.users.service import user_service

logger = logging.getLogger("bazaar.analytics")

M = TypeVar("M", bound=BaseModel)

# Part of every cache key: bump it when a report's shape changes, so that an answer cached by
# the previous release is never served (or parsed) as the new shape.
CACHE_REVISION = 3


def can_read_widget(actor: Principal, owners: WidgetOwners | None) -> bool:
    """Administrators, the end user who owns the widget, or the builder of its project. The
    owners come from the widgets table; for a widget it does not know (usage landed without a
    widget row) they are as the marts record them, and such a widget with no usage yet, or whose
    rows name more than one project, builder or end user, is known to administrators only."""
    if actor.can(Perm.PLATFORM_ADMIN):
        return True
    if owners is None or owners.ambiguous:
        return False
    return actor.user_id in (owners.builder_id, owners.end_user_id)


async def _live_quota(widget_id: UUID) -> WidgetQuota | None:
    """This month's quota of the widget's owner and project, from the widgets domain's OLTP
    counter (None: no such widget row)."""
    from app.widgets.service import widget_service  # see _registered_owners

    quota = await widget_service.live_quota(widget_id)
    if quota is None:
        return None
    return WidgetQuota(
        month=quota.month.strftime("%Y-%m"),
        limit=quota.limit,
        used=quota.used,
        remaining=quota.remaining,
        percent=quota.percent,
    )


def _with_quota(report: bytes, quota: WidgetQuota | None) -> bytes:
    """A cached widget report with this moment's quota: the quota is live, never cached."""
    body = orjson.loads(report)
    body["quota"] = None if quota is None else quota.model_dump(mode="json", by_alias=True)
    return orjson.dumps(body)


async def _registered_owners(widget_id: UUID) -> WidgetOwners | None:
    """The widget's owners from the widgets domain (None: no such widget row)."""
    # Imported here: the widgets service reads the marketplace's, which imports this module.
    from app.widgets.service import widget_service

    ownership = await widget_service.ownership(widget_id)
    if ownership is None:
        return None
    return WidgetOwners(ownership.project_id, ownership.builder_id, ownership.end_user_id)


def _header(served: ServedVersion | None, q: ReportQuery) -> dict[str, Any]:
    warehouse = None
    if served is not None:
        meta = served.meta
        warehouse = WarehouseVersion(version=meta.version, as_of=meta.as_of, published_at=meta.published_at)
    return {
        "warehouse": warehouse,
        "from_": q.start,
        "to": q.end,
        "granularity": q.granularity,
        "currency": q.currency,
    }


async def _run(served: ServedVersion | None, query: Callable[[Cursor], Any], empty: Any) -> Any:
    """``query`` on the served version, or ``empty`` before the first publish."""
    if served is None:
        return empty
    return await served.run(query)


def _llm_totals(cur: Cursor, q: ReportQuery, filters: Filters) -> LlmTotals:
    if not marts_repository.has_llm_marts(cur):
        return LlmTotals()
    return LlmTotals(**marts_repository.llm_totals(cur, q, filters))


def _llm_section(cur: Cursor, q: ReportQuery, filters: Filters) -> LlmSection:
    """Zeros from a version published before the LLM marts existed."""
    if not marts_repository.has_llm_marts(cur):
        return LlmSection()
    return LlmSection(
        totals=LlmTotals(**marts_repository.llm_totals(cur, q, filters)),
        by_model=[LlmModelUsage(**row) for row in marts_repository.llm_by_model(cur, q, filters)],
        series=[LlmPoint(**row) for row in marts_repository.llm_series(cur, q, filters)],
    )


def _full_key(version: str, key: str) -> str:
    return f"analytics:{CACHE_REVISION}:{version}:{key}"


@functools.cache
def _current_link(layout: WarehouseLayout) -> str:
    return str(layout.current_link)


def _published_version(layout: WarehouseLayout) -> str | None:
    """The version ``serve/current`` names: ``layout.current_version()`` without its check that
    the version's file exists (a readlink instead of tens of microseconds of path work). A
    version whose file is gone was never served, so no answer is stored under it; or it was,
    and its answers are still that version's."""
    try:
        return os.path.basename(os.readlink(_current_link(layout)))
    except OSError:
        return None


async def _stored(rt: Runtime, full_key: str) -> bytes | None:
    try:
        # An invalidation marker (b"") is a miss.
        return await rt.cache.get(full_key) or None
    except Exception:
        # The cache only saves work: without it the marts still answer.
        logger.warning("analytics cache unavailable", exc_info=True)
        return None


class AnalyticsService:
    async def cached_answer(self, rt: Runtime, key: str) -> bytes | None:
        """The stored answer under ``key`` (made by the ``*_key`` methods, whose callers have
        checked the caller may read it) for the version published now, or None. No lease: a hit
        reads no mart, and a publish changes the version, so an older answer is never found."""
        if rt.settings.analytics_cache_ttl_seconds <= 0:
            return None
        version = _published_version(rt.warehouse.layout)
        if not version:
            return None
        return await _stored(rt, _full_key(version, key))

    async def _cached_json(
        self, rt: Runtime, served: ServedVersion | None, key: str, build: Callable[[], Awaitable[BaseModel]]
    ) -> bytes:
        """The report's JSON: stored under ``key`` and ``served``'s version, else built and stored."""
        full_key = _full_key(served.version if served is not None else "unpublished", key)
        ttl = rt.settings.analytics_cache_ttl_seconds
        if ttl > 0 and (stored := await _stored(rt, full_key)) is not None:
            return stored
        body = (await build()).model_dump_json(by_alias=True).encode()
        if ttl > 0:
            try:
                await rt.cache.set(full_key, body, ttl)
            except Exception:
                logger.warning("analytics cache unavailable", exc_info=True)
        return body

    async def _cached(
        self,
        rt: Runtime,
        served: ServedVersion | None,
        key: str,
        model: type[M],
        build: Callable[[], Awaitable[M]],
    ) -> M:
        return model.model_validate_json(await self._cached_json(rt, served, key, build))

    # --- cache keys: the report, the caller's scope, the normalised query -------------------

    @staticmethod
    def platform_key(q: ReportQuery) -> str:
        return f"platform:{q.cache_key()}"

    @staticmethod
    def this_month() -> date:
        """The first day of the month the quota counts (UTC)."""
        return period_of("month", datetime.now(UTC).date())

    @staticmethod
    def user_key(user_id: UUID, personas: list[str], plan: str, this_month: date, q: ReportQuery) -> str:
        """The plan code stands for its limits (the quota's size): plans are reference data that
        only a migration changes."""
        return f"user:{user_id}:{','.join(sorted(personas))}:{plan}:{this_month}:{q.cache_key()}"

    @staticmethod
    def revenue_builder(actor: Principal, builder_id: UUID | None) -> UUID | None:
        """Whose revenue ``actor`` may ask for: administrators anyone's (``None``: the
        platform), builders only their own; anyone else is refused."""
        if actor.can(Perm.PLATFORM_ADMIN):
            return builder_id
        if not actor.can(Perm.MARKETPLACE_PUBLISH):
            raise Forbidden("Revenue analytics are for builders and administrators", code="permission_denied")
        if builder_id is not None and builder_id != actor.user_id:
            raise NotFound("User not found", code="user_not_found")
        return actor.user_id

    @staticmethod
    def revenue_key(builder_id: UUID | None, project_id: UUID | None, q: ReportQuery) -> str:
        return f"revenue:{builder_id}:{project_id}:{q.cache_key()}"

    @staticmethod
    def usage_scope(actor: Principal) -> Literal["platform", "builder", "end_user"]:
        """Administrators see all widgets, builders their projects', end users their own."""
        if actor.can(Perm.PLATFORM_ADMIN):
            return "platform"
        return "builder" if actor.persona == "builder" else "end_user"

    def usage_key(self, actor: Principal, project_id: UUID | None, q: ReportQuery) -> str:
        scope = self.usage_scope(actor)
        subject = "" if scope == "platform" else str(actor.user_id)
        return f"usage:{scope}:{subject}:{project_id}:{q.cache_key()}"

    # --- platform --------------------------------------------------------------------------

    async def platform(self, rt: Runtime, db: AsyncSession, q: ReportQuery) -> bytes:
        """Platform KPIs, a series and the leaderboards. The caller is an administrator."""
        async with rt.warehouse.lease() as served:

            async def build() -> PlatformAnalytics:
                def query(cur: Cursor) -> Any:
                    money, money_series = marts_repository.platform_money(cur, q)
                    activity, activity_series = marts_repository.platform_activity(cur, q)
                    return (
                        money,
                        money_series,
                        activity,
                        activity_series,
                        marts_repository.leaderboards(cur, q),
                        _llm_section(cur, q, {}),
                    )

                empty: Any = ({}, [], {}, [], (period_of(q.leaderboard, q.end), {}), LlmSection())
                money, money_series, activity, activity_series, (period, boards), llm = await _run(
                    served, query, empty
                )
                points: dict[Any, PlatformPoint] = {}
                for row in activity_series:
                    start, signups, purchases, refunds, builders, end_users, conversion = row
                    points[start] = PlatformPoint(
                        period_start=start,
                        signups=int(signups or 0),
                        purchases=int(purchases or 0),
                        refunds=int(refunds or 0),
                        active_builders=int(builders or 0),
                        active_end_users=int(end_users or 0),
                        conversion_rate=None if conversion is None else float(conversion),
                    )
                for row in money_series:
                    point = points.setdefault(row[0], PlatformPoint(period_start=row[0]))
                    point.gmv_minor, point.platform_fees_minor = int(row[1]), int(row[4])
                    point.net_revenue_minor = int(row[6])
                series = sorted(points.values(), key=lambda p: p.period_start)
                last = series[-1] if series else PlatformPoint(period_start=q.end)
                views = activity.get("listing_views", 0)
                kpis = PlatformKpis(
                    **money,
                    **activity,
                    active_builders=last.active_builders,
                    active_end_users=last.active_end_users,
                    conversion_rate=activity.get("purchases", 0) / views if views else None,
                )
                users = [e[1] for e in boards.get("builders_by_revenue", [])]
                projects = [
                    e[1] for b in ("projects_by_purchases", "projects_by_usage") for e in boards.get(b, [])
                ]
                names = await names_repository.names(db, users, projects)

                def board(name: str) -> list[LeaderboardEntry]:
                    return [
                        LeaderboardEntry(rank=rank, id=entity, name=names.get(entity), value=value)
                        for rank, entity, value in boards.get(name, [])
                    ]

                return PlatformAnalytics(
                    **_header(served, q),
                    kpis=kpis,
                    series=series,
                    leaderboards=Leaderboards(
                        grain=q.leaderboard,
                        period_start=period,
                        builders_by_revenue=board("builders_by_revenue"),
                        projects_by_purchases=board("projects_by_purchases"),
                        projects_by_usage=board("projects_by_usage"),
                        widgets_by_usage=board("widgets_by_usage"),
                    ),
                    llm=llm,
                )

            return await self._cached_json(rt, served, self.platform_key(q), build)

    # --- one user --------------------------------------------------------------------------

    async def user(
        self, rt: Runtime, db: AsyncSession, actor: Principal, user_id: UUID, q: ReportQuery
    ) -> bytes:
        """Yourself, or anyone for administrators (404 otherwise). A builder section and/or an
        end-user section, by the personas the user holds."""
        user = await user_service.get_visible(db, actor, user_id)
        personas = sorted(await user_service.personas(db, user.id))
        limits = await user_service.plan_limits(db, user.plan) if "end_user" in personas else {}
        monthly = limits.get("monthlyMessages")
        this_month = self.this_month()
        async with rt.warehouse.lease() as served:

            async def build() -> UserAnalytics:
                builder = end_user = None
                if "builder" in personas:
                    builder = await self._builder_section(served, db, user.id, q)
                if "end_user" in personas:
                    end_user = await self._end_user_section(
                        served,
                        user.id,
                        user.plan,
                        monthly if isinstance(monthly, int) else None,
                        this_month,
                        q,
                    )
                return UserAnalytics(
                    **_header(served, q),
                    user_id=user.id,
                    personas=personas,
                    builder=builder,
                    end_user=end_user,
                )

            return await self._cached_json(
                rt, served, self.user_key(user.id, personas, user.plan, this_month, q), build
            )

    async def _builder_section(
        self, served: ServedVersion | None, db: AsyncSession, builder_id: UUID, q: ReportQuery
    ) -> BuilderSection:
        mine = {"builder_id": builder_id}

        def query(cur: Cursor) -> Any:
            return (
                marts_repository.revenue_totals(cur, q, mine),
                marts_repository.payout_totals(cur, q, builder_id),
                marts_repository.usage_totals(cur, q, mine),
                marts_repository.revenue_series(cur, q, mine),
                marts_repository.revenue_by_project(cur, q, mine),
                marts_repository.usage_by(cur, q, mine, ("end_user_id",), limit=1000),
                marts_repository.purchases_by_buyer(cur, q, builder_id),
                _llm_totals(cur, q, mine),
            )

        empty: Any = ({}, {}, {}, [], [], [], {}, LlmTotals())
        revenue, payouts, usage, series, projects, usage_by_customer, purchases, llm = await _run(
            served, query, empty
        )
        customers: dict[UUID, Customer] = {}
        for row in usage_by_customer:
            customer_id = row.pop("end_user_id")
            customers[customer_id] = Customer(user_id=customer_id, name=None, **row)
        for buyer, (count, spent) in purchases.items():
            customer = customers.setdefault(buyer, Customer(user_id=buyer, name=None))
            customer.purchases, customer.spend_minor = count, spent
        top = sorted(customers.values(), key=lambda c: (-c.messages, -c.spend_minor, str(c.user_id)))[
            : q.limit
        ]
        names = await names_repository.names(
            db, [c.user_id for c in top], [p["project_id"] for p in projects]
        )
        for customer in top:
            customer.name = names.get(customer.user_id)
        return BuilderSection(
            revenue=RevenueTotals(**revenue),
            payouts=PayoutTotals(**payouts),
            usage=UsageTotals(**usage),
            series=[RevenuePoint(**point) for point in series],
            projects=[ProjectRevenue(**p, name=names.get(p["project_id"])) for p in projects],
            customers=top,
            llm=llm,
        )

    async def _end_user_section(
        self,
        served: ServedVersion | None,
        end_user_id: UUID,
        plan: str,
        monthly_messages: int | None,
        this_month: Any,
        q: ReportQuery,
    ) -> EndUserSection:
        mine = {"end_user_id": end_user_id}

        def query(cur: Cursor) -> Any:
            return (
                marts_repository.spend(cur, q, end_user_id),
                marts_repository.usage_totals(cur, q, mine),
                marts_repository.usage_series(cur, q, mine),
                marts_repository.usage_by(cur, q, mine, ("widget_id", "project_id", "end_user_id")),
                marts_repository.messages_in_month(cur, this_month, end_user_id),
            )

        spend, usage, series, widgets, used = await _run(served, query, ({}, {}, [], [], 0))
        return EndUserSection(
            spend=SpendTotals(**spend),
            usage=UsageTotals(**usage),
            series=[UsagePoint(**point) for point in series],
            widgets=[WidgetUsage(**w) for w in widgets],
            quota=Quota(
                plan=plan,
                monthly_messages=monthly_messages,
                used_this_month=used,
                remaining=None if monthly_messages is None else max(0, monthly_messages - used),
            ),
        )

    # --- one project, one widget -----------------------------------------------------------

    async def project(
        self, rt: Runtime, db: AsyncSession, actor: Principal, project_id: UUID, q: ReportQuery
    ) -> bytes:
        """The owner's or an administrator's; anyone else gets the 404 a missing project gets."""
        project = await project_service.get_visible(db, actor, project_id)
        this = {"project_id": project.id}
        async with rt.warehouse.lease() as served:

            async def build() -> ProjectAnalytics:
                def query(cur: Cursor) -> Any:
                    return (
                        marts_repository.revenue_totals(cur, q, this),
                        marts_repository.usage_totals(cur, q, this),
                        marts_repository.revenue_series(cur, q, this),
                        marts_repository.usage_series(cur, q, this),
                        marts_repository.usage_by(cur, q, this, ("widget_id", "project_id", "end_user_id")),
                        _llm_section(cur, q, this),
                    )

                revenue, usage, revenue_series, usage_series, widgets, llm = await _run(
                    served, query, ({}, {}, [], [], [], LlmSection())
                )
                return ProjectAnalytics(
                    **_header(served, q),
                    project_id=project.id,
                    name=project.name,
                    revenue=RevenueTotals(**revenue),
                    usage=UsageTotals(**usage),
                    revenue_series=[RevenuePoint(**p) for p in revenue_series],
                    usage_series=[UsagePoint(**p) for p in usage_series],
                    widgets=[WidgetUsage(**w) for w in widgets],
                    llm=llm,
                )

            return await self._cached_json(rt, served, f"project:{project.id}:{q.cache_key()}", build)

    async def widget(self, rt: Runtime, actor: Principal, widget_id: UUID, q: ReportQuery) -> bytes:
        """See :func:`can_read_widget`; a widget the caller may not read is reported missing."""
        registered = await _registered_owners(widget_id)
        async with rt.warehouse.lease() as served:
            owners: WidgetOwners | None = registered or await _run(
                served, lambda cur: marts_repository.widget_owners(cur, widget_id), None
            )
            if owners is not None and owners.ambiguous:
                logger.warning(
                    "widget %s has usage rows naming more than one project, builder or end user; "
                    "only administrators may read its analytics",
                    widget_id,
                )
            if not can_read_widget(actor, owners):
                raise NotFound("Widget not found", code="widget_not_found")
            this = {"widget_id": widget_id}

            async def build() -> WidgetAnalytics:
                def query(cur: Cursor) -> Any:
                    answers = (
                        LlmTotals(**marts_repository.answers_totals(cur, q, this))
                        if marts_repository.has_llm_marts(cur)
                        else LlmTotals()
                    )
                    return (
                        marts_repository.usage_totals(cur, q, this),
                        marts_repository.usage_series(cur, q, this),
                        answers,
                    )

                usage, series, answers = await _run(served, query, ({}, [], LlmTotals()))
                return WidgetAnalytics(
                    llm=answers,
                    **_header(served, q),
                    widget_id=widget_id,
                    project_id=owners.project_id if owners else None,
                    end_user_id=owners.end_user_id if owners else None,
                    usage=UsageTotals(**usage),
                    series=[UsagePoint(**p) for p in series],
                )

            report = await self._cached_json(rt, served, f"widget:{widget_id}:{q.cache_key()}", build)
        return _with_quota(report, await _live_quota(widget_id))

    # --- revenue and usage reports ---------------------------------------------------------

    async def revenue(
        self,
        rt: Runtime,
        db: AsyncSession,
        actor: Principal,
        q: ReportQuery,
        *,
        builder_id: UUID | None,
        project_id: UUID | None,
    ) -> bytes:
        """Administrators: the platform, or one builder or project. Builders: their own only."""
        builder_id = self.revenue_builder(actor, builder_id)
        if project_id is not None:
            project = await project_service.get_visible(db, actor, project_id)
            if builder_id is not None and project.user_id != builder_id:
                raise NotFound("Project not found", code="project_not_found")
        filters = {"builder_id": builder_id, "project_id": project_id}
        async with rt.warehouse.lease() as served:

            async def build() -> RevenueAnalytics:
                def query(cur: Cursor) -> Any:
                    return (
                        marts_repository.revenue_totals(cur, q, filters),
                        None if project_id else marts_repository.payout_totals(cur, q, builder_id),
                        marts_repository.revenue_series(cur, q, filters),
                        marts_repository.revenue_by_project(cur, q, filters),
                    )

                empty: Any = ({}, None if project_id else {}, [], [])
                totals, payouts, series, projects = await _run(served, query, empty)
                names = await names_repository.names(db, [], [p["project_id"] for p in projects])
                return RevenueAnalytics(
                    **_header(served, q),
                    scope="platform" if builder_id is None else "builder",
                    builder_id=builder_id,
                    project_id=project_id,
                    totals=RevenueTotals(**totals),
                    payouts=None if payouts is None else PayoutTotals(**payouts),
                    series=[RevenuePoint(**p) for p in series],
                    projects=[ProjectRevenue(**p, name=names.get(p["project_id"])) for p in projects],
                )

            return await self._cached_json(rt, served, self.revenue_key(builder_id, project_id, q), build)

    async def usage(
        self, rt: Runtime, db: AsyncSession, actor: Principal, q: ReportQuery, *, project_id: UUID | None
    ) -> bytes:
        """Administrators: all widgets; builders: their projects' widgets; end users: their own."""
        filters: dict[str, UUID | None] = {"project_id": project_id}
        scope = self.usage_scope(actor)
        if scope == "builder":
            filters["builder_id"] = actor.user_id
        elif scope == "end_user":
            filters["end_user_id"] = actor.user_id
        async with rt.warehouse.lease() as served:

            async def build() -> UsageAnalytics:
                def query(cur: Cursor) -> Any:
                    return (
                        marts_repository.usage_totals(cur, q, filters),
                        marts_repository.usage_series(cur, q, filters),
                        marts_repository.usage_by(cur, q, filters, ("project_id",)),
                        marts_repository.usage_by(
                            cur, q, filters, ("widget_id", "project_id", "end_user_id")
                        ),
                    )

                totals, series, projects, widgets = await _run(served, query, ({}, [], [], []))
                names = await names_repository.names(db, [], [p["project_id"] for p in projects])
                return UsageAnalytics(
                    **_header(served, q),
                    scope=scope,
                    project_id=project_id,
                    totals=UsageTotals(**totals),
                    series=[UsagePoint(**p) for p in series],
                    projects=[ProjectUsage(**p, name=names.get(p["project_id"])) for p in projects],
                    widgets=[WidgetUsage(**w) for w in widgets],
                )

            return await self._cached_json(rt, served, self.usage_key(actor, project_id, q), build)

    # --- marketplace -----------------------------------------------------------------------

    async def marketplace(
        self, rt: Runtime, db: AsyncSession, q: ReportQuery, *, builder_id: UUID | None
    ) -> MarketplaceReport:
        """Listings by status, sales by currency, top listings and a series: the platform's, or
        one builder's. The marketplace domain decides who may ask for which."""
        async with rt.warehouse.lease() as served:

            async def build() -> MarketplaceReport:
                def query(cur: Cursor) -> Any:
                    return (
                        marts_repository.listing_counts(cur, builder_id),
                        marts_repository.market_totals(cur, q, builder_id),
                        marts_repository.completed_purchases(cur, q, builder_id),
                        marts_repository.top_listings(cur, q, builder_id),
                        marts_repository.market_series(cur, q, builder_id),
                    )

                counts, totals, completed, top, series = await _run(served, query, ({}, [], {}, [], []))
                listings = [
                    (project_id, uuid_or_none(listing), currency, purchases, gross)
                    for project, listing, currency, purchases, gross in top
                    if (project_id := uuid_or_none(project)) is not None
                ]
                names = await names_repository.names(db, [], [row[0] for row in listings])
                by_currency = {row[0]: row for row in totals}
                for currency in completed.keys() - by_currency.keys():
                    by_currency[currency] = (currency, 0, 0, 0, 0, 0, 0)
                return MarketplaceReport(
                    **_header(served, q),
                    listings=ListingCounts(
                        **{k: v for k, v in counts.items() if k in ListingCounts.model_fields}
                    ),
                    totals=[
                        CurrencyTotals(
                            currency=currency,
                            completed=completed.get(currency, 0),
                            refunded=int(refunds),
                            gross_minor=int(gross),
                            refunded_minor=int(refunded),
                            platform_fee_minor=int(fee),
                            builder_share_minor=int(share),
                        )
                        for currency, _sales, refunds, gross, refunded, fee, share in sorted(
                            by_currency.values(), key=lambda row: str(row[0])
                        )
                    ],
                    top_listings=[
                        TopListing(
                            project_id=project,
                            listing_id=listing,
                            title=names.get(project),
                            currency=currency,
                            purchases=int(purchases),
                            gross_minor=int(gross),
                        )
                        for project, listing, currency, purchases, gross in listings
                    ],
                    series=[
                        MarketPoint(period_start=p, currency=c, purchases=int(n), gross_minor=int(g))
                        for p, c, n, g in series
                    ],
                )

            return await self._cached(
                rt, served, f"marketplace:{builder_id}:{q.cache_key()}", MarketplaceReport, build
            )


analytics_service = AnalyticsService()
