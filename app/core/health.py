"""Liveness, readiness and Prometheus metrics endpoints."""

from fastapi import APIRouter, Response
from sqlalchemy import text

from app.core.db import get_engine
from app.core.errors import JSONBody
from app.core.metrics import render_metrics
from app.core.runtime import runtime

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up. Public."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency is down"}})
async def readyz() -> JSONBody:
    """Database and Redis (when configured) answer. Public; 503 with the failing check."""
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
    if ready:
        return JSONBody({"status": "ready", "checks": checks})
    return JSONBody(
        {"error": {"code": "not_ready", "message": "A dependency is unavailable", "details": checks}},
        status_code=503,
    )


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    """Prometheus metrics: request count and latency by route."""
    body, content_type = render_metrics()
    return Response(body, media_type=content_type)
