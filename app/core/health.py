"""Liveness, readiness and Prometheus metrics endpoints."""

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import text

from app.core.db import get_engine
from app.core.errors import JSONBody
from app.core.metrics import render_metrics
from app.core.runtime import Runtime, runtime

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up. Public."""
    return {"status": "ok"}


async def warehouse_freshness(rt: Runtime) -> dict[str, Any]:
    """The served warehouse version and its age: ``ok``, ``stale`` (published longer ago than
    ``WAREHOUSE_STALE_SECONDS``) or ``missing`` (nothing published, or unreadable)."""
    try:
        async with rt.warehouse.lease() as served:
            meta = served.meta if served is not None else None
    except Exception as exc:
        return {"status": "missing", "error": type(exc).__name__}
    if meta is None:
        return {"status": "missing", "version": None, "publishedAt": None, "asOf": None, "ageSeconds": None}
    published = meta.published_at
    age = None if published is None else max(0, int((datetime.now(UTC) - published).total_seconds()))
    stale = age is None or age > rt.settings.warehouse_stale_seconds
    return {
        "status": "stale" if stale else "ok",
        "version": meta.version,
        "publishedAt": published.isoformat() if published else None,
        "asOf": meta.as_of.isoformat() if meta.as_of else None,
        "ageSeconds": age,
    }


@router.get("/readyz", responses={503: {"description": "A dependency is down"}})
async def readyz() -> JSONBody:
    """Database and Redis (when configured) answer. Public; 503 with the failing check.
    ``warehouse`` reports the served analytics version (``ok``, ``stale``, ``missing``) and its
    age; it never makes the API unready, since every other endpoint works without it."""
    checks: dict[str, str] = {}
    try:
        async with get_engine().connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    rt = runtime()
    if rt.settings.redis_url is None:
        checks["redis"] = "embedded"
    else:
        try:
            await rt.cache.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    ready = all(value in {"ok", "embedded"} for value in checks.values())
    warehouse = await warehouse_freshness(rt)
    if ready:
        # Beside ``checks``, not in them: every check there gates readiness, this one does not.
        return JSONBody({"status": "ready", "checks": checks, "warehouse": warehouse})
    return JSONBody(
        {
            "error": {
                "code": "not_ready",
                "message": "A dependency is unavailable",
                "details": {**checks, "warehouse": warehouse["status"]},
            }
        },
        status_code=503,
    )


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    """Prometheus metrics: request count and latency by route."""
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
