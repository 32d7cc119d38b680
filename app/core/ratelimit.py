"""Rate limits with the ``limits`` library: Redis-backed when configured, in-process otherwise."""

import time

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request

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


def client_ip(request: Request, settings: Settings) -> str:
    """The address a per-client limit counts. With ``TRUST_FORWARDED_FOR``, the last
    ``X-Forwarded-For`` entry: the one the trusted proxy appended (the entries before it are
    whatever the client sent, so keying on them would let a client pick its own bucket)."""
    ip = request.client.host if request.client else "unknown"
    if settings.trust_forwarded_for:
        forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            ip = last
    return ip[:64]


def build_rate_limiter(settings: Settings) -> RateLimiter:
    if settings.redis_url is None:
        return RateLimiter(MemoryStorage())
    storage = RedisStorage(
        settings.redis_url.replace("redis://", "async+redis://", 1),
        implementation="redispy",
        key_prefix=settings.redis_prefix + "limits",
    )
    return RateLimiter(storage)
