"""Rate limits with the ``limits`` library: Redis-backed when configured, in-process otherwise."""

import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from app.core.config import Settings
from app.core.errors import TooManyRequests


class RateLimiter:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)

    async def hit(self, rules: str, *identifiers: str, message: str) -> None:
        """Count one attempt against every rule in ``rules``; 429 when any is exhausted."""
        for item in parse_many(rules):
            if not await self._limiter.hit(item, *identifiers):
                raise TooManyRequests(message, retry_after=await self._retry_after(item, identifiers))

    async def _retry_after(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> int:
        stats = await self._limiter.get_window_stats(item, *identifiers)
        return int(stats.reset_time - time.time()) + 1

    async def reset(self) -> None:
        await self._storage.reset()


def build_rate_limiter(settings: Settings) -> RateLimiter:
    if settings.redis_url is None:
        return RateLimiter(MemoryStorage())
    storage = RedisStorage(
        settings.redis_url.replace("redis://", "async+redis://", 1),
        implementation="redispy",
        key_prefix=settings.redis_prefix + "limits",
    )
    return RateLimiter(storage)
