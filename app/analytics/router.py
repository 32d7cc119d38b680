"""Analytics endpoints: the seed's Analytics service plus the per-resource analytics of the
users, projects and widgets services. All read the published marts (``app.core.warehouse``);
every answer names the warehouse `version`, `asOf` and `publishedAt` it reflects
(`"warehouse": null` and zeros before the first publish)."""

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from app.analytics.deps import PlatformReport, Report
from app.analytics.schemas import (
    PlatformAnalytics,
    ProjectAnalytics,
    RevenueAnalytics,
    UsageAnalytics,
    UserAnalytics,
    WidgetAnalytics,
)
from app.analytics.service import analytics_service
from app.auth.deps import CurrentPrincipal, require_permission
from app.auth.permissions import Perm
from app.core.db import DB
from app.core.openapi import errors
from app.core.principal import Principal
from app.core.runtime import runtime

router = APIRouter(tags=["analytics"])

PlatformAdmin = Annotated[Principal, Depends(require_permission(Perm.PLATFORM_ADMIN))]


@router.get("/api/analytics/platform", response_model=PlatformAnalytics, responses=errors(401, 403))
async def platform_analytics(db: DB, _: PlatformAdmin, q: PlatformReport) -> PlatformAnalytics:
    """Administrators: GMV, net revenue, fees, signups, purchases, active builders and end users,
    conversion, a series per `granularity`, and leaderboards (top builders by revenue, projects
    by purchases and by usage, widgets by usage) for `leaderboard` = day/week/month/all_time,
    and LLM tokens, cost (USD) and latency by model. The answer names the warehouse version it
    reflects."""
    return await analytics_service.platform(runtime(), db, q)


@router.get("/api/analytics/user/{user_id}", response_model=UserAnalytics, responses=errors(401, 404))
@router.get("/api/users/{user_id}/analytics", response_model=UserAnalytics, responses=errors(401, 404))
async def user_analytics(user_id: UUID, db: DB, principal: CurrentPrincipal, q: Report) -> UserAnalytics:
    """A user's analytics: yourself, or anyone for administrators (404 otherwise). Builders get
    sales, revenue, payouts, usage of their projects, their customers and the LLM answers of
    their projects (tokens, cost, studio test chats included); end users get usage per
    widget, spend and the messages left in this month's plan quota. The answer names the
    warehouse version it reflects."""
    return await analytics_service.user(runtime(), db, principal, user_id, q)


@router.get(
    "/api/analytics/projects/{project_id}", response_model=ProjectAnalytics, responses=errors(401, 404)
)
@router.get(
    "/api/projects/{project_id}/analytics", response_model=ProjectAnalytics, responses=errors(401, 404)
)
async def project_analytics(
    project_id: UUID, db: DB, principal: CurrentPrincipal, q: Report
) -> ProjectAnalytics:
    """A project's sales, revenue, usage per widget and LLM answers (tokens, cost in USD,
    answers per model and channel, latency p50/p95; builder studio test chats included): its
    owner or an administrator (404 otherwise, like a missing project). The answer names the
    warehouse version it reflects."""
    return await analytics_service.project(runtime(), db, principal, project_id, q)


@router.get("/api/analytics/widgets/{widget_id}", response_model=WidgetAnalytics, responses=errors(401, 404))
@router.get("/api/widgets/{widget_id}/analytics", response_model=WidgetAnalytics, responses=errors(401, 404))
async def widget_analytics(widget_id: UUID, principal: CurrentPrincipal, q: Report) -> WidgetAnalytics:
    """A widget's usage: administrators, the end user who owns it or the builder of its project
    (404 otherwise). The answer names the warehouse version it reflects."""
    return await analytics_service.widget(runtime(), principal, widget_id, q)


@router.get("/api/analytics/revenue", response_model=RevenueAnalytics, responses=errors(401, 403, 404))
async def revenue_analytics(
    db: DB,
    principal: CurrentPrincipal,
    q: Report,
    builder_id: Annotated[
        UUID | None, Query(alias="builderId", description="Administrators: one builder")
    ] = None,
    project_id: Annotated[UUID | None, Query(alias="projectId", description="One project")] = None,
) -> RevenueAnalytics:
    """Sales, fees, builder share, refunds and payouts with a series and the top projects.
    Administrators see the platform (or one builder or project); builders their own only; end
    users are refused. The answer names the warehouse version it reflects."""
    return await analytics_service.revenue(
        runtime(), db, principal, q, builder_id=builder_id, project_id=project_id
    )


@router.get("/api/analytics/usage", response_model=UsageAnalytics, responses=errors(401))
async def usage_analytics(
    db: DB,
    principal: CurrentPrincipal,
    q: Report,
    project_id: Annotated[UUID | None, Query(alias="projectId", description="One project")] = None,
) -> UsageAnalytics:
    """Widget usage (impressions, opens, messages, tokens; sessions and visitors per period) with
    the top projects and widgets. Administrators see everything, builders their projects'
    widgets, end users their own widgets. The answer names the warehouse version it reflects."""
    return await analytics_service.usage(runtime(), db, principal, q, project_id=project_id)
