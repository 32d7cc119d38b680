"""Process-wide resources built once at start-up (lifespan) from the settings."""

from dataclasses import dataclass

from app.core.cache import Cache, build_cache
from app.core.config import Settings
from app.core.ratelimit import RateLimiter, build_rate_limiter
from app.core.warehouse import WarehouseReader
from app.core.warehouse_layout import WarehouseLayout


@dataclass
class Runtime:
    settings: Settings
    cache: Cache
    rate_limiter: RateLimiter
    jwt_secret: str
    warehouse: WarehouseReader


_runtime: Runtime | None = None


async def start_runtime(settings: Settings) -> Runtime:
    global _runtime
    _runtime = Runtime(
        settings=settings,
        cache=build_cache(settings),
        rate_limiter=build_rate_limiter(settings),
        jwt_secret=settings.jwt_secret_value(),
        warehouse=WarehouseReader(WarehouseLayout(settings.warehouse_dir)),
    )
    await _runtime.cache.start()
    return _runtime


async def stop_runtime() -> None:
    global _runtime
    if _runtime is not None:
        await _runtime.cache.close()
        _runtime.warehouse.close()
    _runtime = None


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("runtime not started")
    return _runtime
