"""``bazaar worker``: runs queued and periodic jobs, the outbox relay, the notification dispatcher
and (with Redis) the usage stream consumer, until interrupted."""

import asyncio
import contextlib
import logging

from app.core.config import get_settings
from app.core.db import dispose_engine, init_engine, sessionmaker
from app.core.logging import configure_logging
from app.core.runtime import start_runtime, stop_runtime
from app.notifications.dispatcher import run_dispatcher
from app.notifications.realtime import broker as realtime_broker
from app.worker.queue import queue
from app.worker.relay import run_relay
from app.worker.usage_consumer import UsageConsumer, consumer_redis

logger = logging.getLogger("bazaar.worker")


async def run_worker() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    init_engine(settings)
    await start_runtime(settings)
    await realtime_broker.start(settings)  # announces the notifications it creates
    logger.info("worker starting")
    # Landing runs beside the job queue in the same event loop; procrastinate's signal handlers
    # end run_worker_async, then `stop` lets the relay, the notification dispatcher and the
    # consumer finish the batch in hand.
    stop = asyncio.Event()
    landing = [
        asyncio.create_task(run_relay(sessionmaker(), settings, stop), name="outbox-relay"),
        asyncio.create_task(run_dispatcher(sessionmaker(), settings, stop), name="notification-dispatcher"),
    ]
    stream_redis = consumer_redis(settings) if settings.redis_url is not None else None
    if stream_redis is not None:
        consumer = UsageConsumer(stream_redis, settings)
        landing.append(asyncio.create_task(consumer.run(stop), name="usage-consumer"))
    try:
        async with queue.open_async():
            # Several jobs at once: a file's extraction (up to FILE_EXTRACT_TIMEOUT_SECONDS in its
            # helper process) or a slow MCP health check must not hold up mail and payouts.
            await queue.run_worker_async(
                install_signal_handlers=True, concurrency=settings.worker_concurrency
            )
    finally:
        stop.set()
        for task in landing:
            # Bounded: a batch in hand takes well under this; entries not acknowledged are
            # relayed or reclaimed later anyway.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=settings.landing_flush_seconds + 30)
        if stream_redis is not None:
            await stream_redis.aclose()
        await realtime_broker.close()
        await stop_runtime()
        await dispose_engine()


def main() -> None:
    asyncio.run(run_worker())
