"""Cache with an in-process first level and, when ``REDIS_URL`` is set, Redis behind it.

Reads are served from process memory when possible, so a hot key costs no network round trip.
With Redis, every process shares the second level and ``invalidate`` is broadcast over Redis
pub/sub, so every process drops its copy within milliseconds. Without Redis (the embedded
default, one API process) the first level is the whole cache.

Invalidation leaves a short-lived empty *marker* in Redis rather than deleting the key: a
request that read the old value just before the change committed writes back with
``only_if_absent`` and cannot resurrect it. In process, a generation counter does the same
for values fetched from Redis while an invalidation went by.
"""

import asyncio
import contextlib
import logging
import time

import redis.asyncio as aioredis

from app.core.config import Settings

logger = logging.getLogger("bazaar.cache")

# How long an invalidated key is kept from being cached again: it only has to outlive a request
# that was loading the old value while the change committed.
INVALIDATION_MARKER_SECONDS = 5
_MAX_LOCAL_ENTRIES = 100_000


class LocalCache:
    """The first level: a dict with expiry times, bounded in size."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, bytes]] = {}
        self.generation = 0

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at < time.monotonic():
            self._entries.pop(key, None)
            return None
        return value

    def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        if len(self._entries) >= _MAX_LOCAL_ENTRIES:
            self._evict_expired()
            if len(self._entries) >= _MAX_LOCAL_ENTRIES:
                self._entries.clear()
        self._entries[key] = (time.monotonic() + ttl_seconds, value)

    def drop(self, keys: list[str]) -> None:
        self.generation += 1
        for key in keys:
            self._entries.pop(key, None)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()

    def _evict_expired(self) -> None:
        now = time.monotonic()
        for key in [k for k, (exp, _) in self._entries.items() if exp < now]:
            del self._entries[key]


class Cache:
    def __init__(
        self,
        local_ttl_seconds: float,
        client: "aioredis.Redis | None" = None,
        prefix: str = "",
        subscriber: "aioredis.Redis | None" = None,
    ) -> None:
        self._local = LocalCache()
        self._local_ttl = local_ttl_seconds
        self._client = client
        # Pub/sub needs a connection without a read timeout: it is idle most of the time.
        self._subscriber = subscriber
        self._prefix = prefix
        self._channel = prefix + "invalidations"
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def start(self) -> None:
        """Begin listening for other processes' invalidations (no-op without Redis)."""
        if self._subscriber is not None and self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="cache-invalidations")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listening.wait(), timeout=2)

    async def get(self, key: str) -> bytes | None:
        """The value, or ``None`` on a miss. An invalidation marker reads as ``b""``."""
        if self._client is None:
            return self._local.get(key)
        if self._listening.is_set():
            # The first level is only trusted while invalidations are being received.
            value = self._local.get(key)
            if value is not None:
                return value
        generation = self._local.generation
        remote = await self._client.get(self._prefix + key)
        if isinstance(remote, str):
            remote = remote.encode()
        if remote and generation == self._local.generation:
            self._local.set(key, remote, self._local_ttl)
        return remote

    async def set(self, key: str, value: bytes, ttl_seconds: int, *, only_if_absent: bool = False) -> bool:
        """Store a value; with ``only_if_absent`` nothing happens if the key (or a marker) exists."""
        if self._client is None:
            if only_if_absent and self._local.get(key) is not None:
                return False
            self._local.set(key, value, ttl_seconds)
            return True
        generation = self._local.generation
        written = await self._client.set(self._prefix + key, value, ex=max(1, ttl_seconds), nx=only_if_absent)
        if written and value and generation == self._local.generation:
            self._local.set(key, value, min(ttl_seconds, self._local_ttl))
        return bool(written)

    async def invalidate(self, *keys: str) -> None:
        """Make every process forget ``keys`` and keep them uncached for a few seconds."""
        if not keys:
            return
        if self._client is None:
            self._local.drop(list(keys))
            for key in keys:
                self._local.set(key, b"", INVALIDATION_MARKER_SECONDS)
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(self._prefix + key, b"", ex=INVALIDATION_MARKER_SECONDS)
            pipe.publish(self._channel, "\n".join(keys))
            await pipe.execute()
        self._local.drop(list(keys))

    async def ping(self) -> None:
        if self._client is not None:
            await self._client.ping()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        for client in (self._client, self._subscriber):
            if client is not None:
                await client.aclose()
        self._local.clear()

    async def _listen(self) -> None:
        assert self._subscriber is not None
        while True:
            try:
                async with self._subscriber.pubsub() as pubsub:
                    await pubsub.subscribe(self._channel)
                    # Anything cached while we were not listening may have missed an invalidation.
                    self._local.clear()
                    self._listening.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message["data"]
                            text = data.decode() if isinstance(data, bytes) else str(data)
                            self._local.drop(text.split("\n"))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("cache invalidation listener lost Redis; retrying", exc_info=True)
                self._listening.clear()
                self._local.clear()
                await asyncio.sleep(1)


def build_cache(settings: Settings) -> Cache:
    local_ttl = settings.session_cache_ttl_seconds
    if settings.redis_url is None:
        return Cache(local_ttl)
    # A blocking pool: under a burst of concurrent requests (more than max_connections cache
    # misses at once) a request waits for a connection; the default pool raises at once instead
    # (redis.exceptions.MaxConnectionsError), which answered 500 (found by bench/purchases.py).
    # The connect timeout is measured on the event loop: a burst of new connections on a busy
    # loop (two CPUs shared with a dbt build) took longer than 2 s to be accepted and answered
    # 500s, while a Redis that is down refuses at once whatever the timeout.
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=100, timeout=5, socket_timeout=2, socket_connect_timeout=5
    )
    client = aioredis.Redis.from_pool(pool)
    subscriber = aioredis.Redis.from_url(settings.redis_url, socket_connect_timeout=2)
    return Cache(local_ttl, client, settings.redis_prefix + "cache:", subscriber)
