"""The FastAPI application factory."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.analytics.router import router as analytics_router
from app.auth.router import router as auth_router
from app.billing.router import router as billing_router
from app.chat.router import router as chat_router
from app.chat.service import chat_service
from app.core.config import Settings, get_settings
from app.core.db import dispose_engine, init_engine
from app.core.errors import install_error_handlers
from app.core.health import router as health_router
from app.core.logging import configure_logging
from app.core.middleware import BodySizeLimitMiddleware, DashboardCORSMiddleware, RequestContextMiddleware
from app.core.runtime import start_runtime, stop_runtime
from app.files.router import router as files_router
from app.llm.http import close_http_client
from app.llm.router import router as llm_router
from app.marketplace.router import router as marketplace_router
from app.mcp.router import router as mcp_router
from app.notifications.realtime import broker as realtime_broker
from app.notifications.router import router as notifications_router
from app.notifications.stream import router as notification_stream_router
from app.payments.providers import reset_providers
from app.payments.router import router as payments_router
from app.projects.router import router as projects_router
from app.revenue.router import router as revenue_router
from app.users.router import router as users_router
from app.widgets.assets import router as widget_assets_router
from app.widgets.router import router as widgets_router
from app.widgets.runtime import router as widget_runtime_router

DESCRIPTION = """
Bazaar's API: a marketplace for AI chat applications.

**Auth**: `Authorization: Bearer <accessToken>` from `POST /api/auth/login`. Personas:
`super_admin`, `builder`, `end_user`; the token carries the active one.

**Errors** always have the shape `{"error": {"code", "message", "details"}}`.

**Lists** take `?page=&limit=&sort=` and return `{"items": [...], "pagination": {"total", "page", "limit"}}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        init_engine(settings)
        await start_runtime(settings)
        await realtime_broker.start(settings, serves_streams=True)
        reset_providers()  # providers are built from these settings on first use
        if settings.environment != "test":  # a test process starts hundreds of apps
            # The cyclic collector, tuned for a server (bench/README.md, "Widget beacons"). What
            # exists now (modules, models, routes: ~280k objects) lives as long as the process:
            # frozen, it is no longer walked by every full collection (~170 ms each, every second
            # under load). And the young generation is collected after 10,000 allocations rather
            # than 700, which the objects of a few dozen requests in flight reach many times a
            # second (a fifth of a busy process's time went to collections before these two).
            gc.collect()
            gc.freeze()
            gc.set_threshold(10_000, 10, 10)
        try:
            yield
        finally:
            await realtime_broker.close()  # ends the open notification streams
            # Answers whose clients are gone still run: store them before the engine goes.
            await chat_service.drain(timeout=min(30.0, settings.llm_call_deadline_seconds))
            await close_http_client()
            await stop_runtime()
            await dispose_engine()

    configure_logging(settings.log_level, settings.log_json)
    app = FastAPI(title="Bazaar API", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    for router in (
        # First: FastAPI tries every route of the routers before the one that matches, and the
        # widget runtime's usage beacons are by far the most frequent request.
        widget_runtime_router,
        health_router,
        auth_router,
        # Next: a cached report is answered in a few dozen microseconds, and routing to it past
        # every earlier route was two thirds of that (bench/README.md, analytics.py).
        analytics_router,
        users_router,
        projects_router,
        marketplace_router,
        payments_router,
        billing_router,
        revenue_router,
        files_router,
        llm_router,
        chat_router,
        mcp_router,
        widgets_router,
        widget_assets_router,
        # Before the notifications' API: /stream is not a notification id.
        notification_stream_router,
        notifications_router,
    ):
        app.include_router(router)
    if settings.cors_origins:
        app.add_middleware(
            DashboardCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            allow_credentials=True,
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(RequestContextMiddleware)
    return app
