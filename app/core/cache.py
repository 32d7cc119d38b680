"""Key-value cache: Redis when ``REDIS_URL`` is set, an in-process dict otherwise.

The in-process fallback is only correct with a single API process (the embedded default);
with Redis every process sees the same entries and a delete is visible to all at once.
"""

import time
from typing import Protocol

import redis.asyncio as aioredis

from app.core.config import Settings


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(
        self, key: str, value: bytes, ttl_seconds: int, *, only_if_absent: bool = False
    ) -> None: ...
    async def delete(self, *keys: str) -> None: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...


class MemoryCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, bytes]] = {}

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires_at, value = entry
        if expires_at < time.monotonic():
            self._entries.pop(key, None)
            return None
        return value

    async def set(self, key: str, value: bytes, ttl_seconds: int, *, only_if_absent: bool = False) -> None:
        if len(self._entries) > 100_000:
            self._evict_expired()
        if only_if_absent and await self.get(key) is not None:
            return
        self._entries[key] = (time.monotonic() + ttl_seconds, value)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._entries.pop(key, None)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._entries.clear()

    def _evict_expired(self) -> None:
        now = time.monotonic()
        for key in [k for k, (exp, _) in self._entries.items() if exp < now]:
            del self._entries[key]


class RedisCache:
    def __init__(self, client: "aioredis.Redis", prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    async def get(self, key: str) -> bytes | None:
        value = await self._client.get(self._prefix + key)
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl_seconds: int, *, only_if_absent: bool = False) -> None:
        await self._client.set(self._prefix + key, value, ex=max(1, ttl_seconds), nx=only_if_absent)

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._client.delete(*(self._prefix + k for k in keys))

    async def ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()


def build_cache(settings: Settings) -> Cache:
    if settings.redis_url is None:
        return MemoryCache()
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    return RedisCache(client, settings.redis_prefix + "cache:")
