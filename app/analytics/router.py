"""Analytics endpoints: the seed's Analytics service plus the per-resource analytics of the
users, projects and widgets services. All read the published marts (``app.core.warehouse``);
every answer names the warehouse `version`, `asOf` and `publishedAt` it reflects
(`"warehouse": null` and zeros before the first publish).

Answers are the report's JSON as the cache stores it. A cached answer that needs no database to
find and to authorise (the platform, usage and revenue reports, a user's own analytics) is sent
by :class:`ReportRoute` before the route's dependencies run: see there.
"""

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Response
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from app.analytics.deps import PlatformReport, Report, plain_report, plain_uuid
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
from app.auth.service import Authenticated, auth_service
from app.core.db import DB
from app.core.errors import AppError
from app.core.openapi import errors
from app.core.principal import Principal
from app.core.runtime import runtime

# The cache key of a request's answer if its caller may read it and the key needs no database;
# None sends the request the normal way. Raising an AppError does too (the route then refuses).
FastKey = Callable[[Authenticated, Scope], str | None]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Coroutine[Any, Any, Response]])

_FAST_KEYS: dict[Callable[..., Any], FastKey] = {}


def answered_from_cache(fast_key: FastKey) -> Callable[[Endpoint], Endpoint]:
    """Lets :class:`ReportRoute` answer the endpoint's cached answers under ``fast_key``."""

    def register(endpoint: Endpoint) -> Endpoint:
        _FAST_KEYS[endpoint] = fast_key
        return endpoint

    return register


class ReportRoute(APIRoute):
    """An analytics route that answers a cached report before FastAPI's per-request work.

    A hit costs what ``GET /api/auth/me`` costs: the same authentication (verified token, the
    session cache: a logged-out or suspended user is refused as anywhere), the route's rules on
    the principal, the query string read in its plain spelling (``plain_report``), one cache
    read under the version published now, and the stored bytes. No database session, no lease,
    no pydantic model, no dependency resolution (which, with the session's open and commit, was
    most of a cached answer's cost: bench/README.md). Anything else (no cached answer, a caller
    the rules refuse or cannot judge without the database, an unusual query string, the cache
    turned off) goes through the route as usual, which answers or refuses it the same way and
    stores the bytes it answers."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.fast_key = _FAST_KEYS.get(endpoint)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_key is not None and scope["method"] == "GET":
            body = await _cached_answer(self.fast_key, scope)
            if body is not None:
                await report_response(body)(scope, receive, send)
                return
        await super().handle(scope, receive, send)


async def _cached_answer(fast_key: FastKey, scope: Scope) -> bytes | None:
    rt = runtime()
    if rt.settings.analytics_cache_ttl_seconds <= 0:
        return None
    token = _plain_bearer(scope)
    if token is None:
        return None
    try:
        key = fast_key(await auth_service.authenticate(rt, token), scope)
    except AppError:
        return None
    return None if key is None else await analytics_service.cached_answer(rt, key)


def _plain_bearer(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (the first, as ``HTTPBearer``
    reads it); None for anything else, which the route's own dependency judges."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token if scheme == "Bearer" and token and token.strip() == token else None
    return None


def report_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _query_string(scope: Scope) -> str:
    raw: bytes = scope["query_string"]
    return raw.decode("latin-1")


# --- the routes' rules, on the principal alone ------------------------------------------------------


def _platform_key(auth: Authenticated, scope: Scope) -> str | None:
    parsed = plain_report(_query_string(scope), leaderboard=True)
    if parsed is None or not auth.principal.can(Perm.PLATFORM_ADMIN):
        return None
    return analytics_service.platform_key(parsed[0])


def _own_user_key(auth: Authenticated, scope: Scope) -> str | None:
    """Only your own: the session cache holds your personas and plan (invalidated when they
    change); another user's are in the database, like whether an administrator may see them."""
    user_id = plain_uuid(scope["path_params"]["user_id"])
    parsed = plain_report(_query_string(scope))
    if parsed is None or user_id is None or user_id != auth.principal.user_id:
        return None
    me = auth.user
    return analytics_service.user_key(
        user_id, me["personas"], me["plan"], analytics_service.this_month(), parsed[0]
    )


def _revenue_key(auth: Authenticated, scope: Scope) -> str | None:
    parsed = plain_report(_query_string(scope), ("builderId", "projectId"))
    if parsed is None:
        return None
    q, (builder_id, project_id) = parsed
    if project_id is not None:
        return None  # whether the caller may see the project is in the database
    builder_id = analytics_service.revenue_builder(auth.principal, builder_id)
    return analytics_service.revenue_key(builder_id, None, q)


def _usage_key(auth: Authenticated, scope: Scope) -> str | None:
    parsed = plain_report(_query_string(scope), ("projectId",))
    if parsed is None:
        return None
    q, (project_id,) = parsed
    return analytics_service.usage_key(auth.principal, project_id, q)


# --- routes -----------------------------------------------------------------------------------------

router = APIRouter(tags=["analytics"], route_class=ReportRoute)

PlatformAdmin = Annotated[Principal, Depends(require_permission(Perm.PLATFORM_ADMIN))]


# The dashboards' reports first: FastAPI tries a router's routes in order.
@router.get("/api/analytics/platform", response_model=PlatformAnalytics, responses=errors(401, 403))
@answered_from_cache(_platform_key)
async def platform_analytics(db: DB, _: PlatformAdmin, q: PlatformReport) -> Response:
    """Administrators: GMV, net revenue, fees, signups, purchases, active builders and end users,
    conversion, a series per `granularity`, and leaderboards (top builders by revenue, projects
    by purchases and by usage, widgets by usage) for `leaderboard` = day/week/month/all_time,
    and LLM tokens, cost (USD) and latency by model. The answer names the warehouse version it
    reflects."""
    return report_response(await analytics_service.platform(runtime(), db, q))


@router.get("/api/analytics/revenue", response_model=RevenueAnalytics, responses=errors(401, 403, 404))
@answered_from_cache(_revenue_key)
async def revenue_analytics(
    db: DB,
    principal: CurrentPrincipal,
    q: Report,
    builder_id: Annotated[
        UUID | None, Query(alias="builderId", description="Administrators: one builder")
    ] = None,
    project_id: Annotated[UUID | None, Query(alias="projectId", description="One project")] = None,
) -> Response:
    """Sales, fees, builder share, refunds and payouts with a series and the top projects.
    Administrators see the platform (or one builder or project); builders their own only; end
    users are refused. The answer names the warehouse version it reflects."""
    report = await analytics_service.revenue(
        runtime(), db, principal, q, builder_id=builder_id, project_id=project_id
    )
    return report_response(report)


@router.get("/api/analytics/usage", response_model=UsageAnalytics, responses=errors(401))
@answered_from_cache(_usage_key)
async def usage_analytics(
    db: DB,
    principal: CurrentPrincipal,
    q: Report,
    project_id: Annotated[UUID | None, Query(alias="projectId", description="One project")] = None,
) -> Response:
    """Widget usage (impressions, opens, messages, tokens; sessions and visitors per period) with
    the top projects and widgets. Administrators see everything, builders their projects'
    widgets, end users their own widgets. The answer names the warehouse version it reflects."""
    return report_response(await analytics_service.usage(runtime(), db, principal, q, project_id=project_id))


@router.get("/api/analytics/user/{user_id}", response_model=UserAnalytics, responses=errors(401, 404))
@router.get("/api/users/{user_id}/analytics", response_model=UserAnalytics, responses=errors(401, 404))
@answered_from_cache(_own_user_key)
async def user_analytics(user_id: UUID, db: DB, principal: CurrentPrincipal, q: Report) -> Response:
    """A user's analytics: yourself, or anyone for administrators (404 otherwise). Builders get
    sales, revenue, payouts, usage of their projects, their customers and the LLM answers of
    their projects (tokens, cost, studio test chats included); end users get usage per
    widget, spend and the messages left in this month's plan quota. The answer names the
    warehouse version it reflects."""
    return report_response(await analytics_service.user(runtime(), db, principal, user_id, q))


@router.get(
    "/api/analytics/projects/{project_id}", response_model=ProjectAnalytics, responses=errors(401, 404)
)
@router.get(
    "/api/projects/{project_id}/analytics", response_model=ProjectAnalytics, responses=errors(401, 404)
)
async def project_analytics(project_id: UUID, db: DB, principal: CurrentPrincipal, q: Report) -> Response:
    """A project's sales, revenue, usage per widget and LLM answers (tokens, cost in USD,
    answers per model and channel, latency p50/p95; builder studio test chats included): its
    owner or an administrator (404 otherwise, like a missing project). The answer names the
    warehouse version it reflects."""
    return report_response(await analytics_service.project(runtime(), db, principal, project_id, q))


@router.get("/api/analytics/widgets/{widget_id}", response_model=WidgetAnalytics, responses=errors(401, 404))
@router.get("/api/widgets/{widget_id}/analytics", response_model=WidgetAnalytics, responses=errors(401, 404))
async def widget_analytics(widget_id: UUID, principal: CurrentPrincipal, q: Report) -> Response:
    """A widget's usage: administrators, the end user who owns it or the builder of its project
    (404 otherwise). The answer names the warehouse version it reflects."""
    return report_response(await analytics_service.widget(runtime(), principal, widget_id, q))
