"""``bazaar worker``: runs queued and periodic jobs until interrupted."""

import asyncio
import logging

from app.core.config import get_settings
from app.core.db import dispose_engine, init_engine
from app.core.logging import configure_logging
from app.core.runtime import start_runtime, stop_runtime
from app.worker.queue import queue

logger = logging.getLogger("bazaar.worker")


async def run_worker() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    init_engine(settings)
    await start_runtime(settings)
    logger.info("worker starting")
    try:
        async with queue.open_async():
            await queue.run_worker_async(install_signal_handlers=True)
    finally:
        await stop_runtime()
        await dispose_engine()


def main() -> None:
    asyncio.run(run_worker())
