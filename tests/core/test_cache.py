"""The two-level cache: what one process invalidates, every other process forgets."""

import asyncio

import pytest

from app.core.cache import build_cache


async def _eventually(predicate, seconds: float = 3.0) -> bool:
    for _ in range(int(seconds / 0.02)):
        if await predicate():
            return True
        await asyncio.sleep(0.02)
    return False


@pytest.fixture
async def two_processes(settings):
    if settings.redis_url is None:
        pytest.skip("needs Redis")
    first, second = build_cache(settings), build_cache(settings)
    await first.start()
    await second.start()
    yield first, second
    await first.close()
    await second.close()


async def test_an_invalidation_in_one_process_reaches_the_others_first_level(two_processes):
    first, second = two_processes
    assert await first.set("principal:s1", b"v1", 60)
    assert await second.get("principal:s1") == b"v1"  # now held in the second's memory

    await first.invalidate("principal:s1")

    async def second_forgot() -> bool:
        return await second.get("principal:s1") == b""

    assert await _eventually(second_forgot)


async def test_a_loader_cannot_overwrite_an_invalidation_marker(two_processes):
    first, second = two_processes
    await first.invalidate("principal:s2")
    assert not await second.set("principal:s2", b"stale", 60, only_if_absent=True)
    assert await second.get("principal:s2") == b""
    assert await first.get("principal:s2") == b""


async def test_without_redis_the_in_process_cache_honours_markers_too(make_settings):
    cache = build_cache(make_settings(redis_url=None))
    await cache.start()
    assert await cache.set("k", b"v", 60)
    assert await cache.get("k") == b"v"
    await cache.invalidate("k")
    assert await cache.get("k") == b""
    assert not await cache.set("k", b"stale", 60, only_if_absent=True)
    await cache.close()
