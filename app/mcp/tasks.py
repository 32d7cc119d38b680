"""The periodic health check of the active MCP clients."""

import logging

from app.core.config import get_settings
from app.core.runtime import runtime
from app.mcp.service import mcp_service
from app.worker.queue import queue

logger = logging.getLogger("bazaar.mcp.tasks")


@queue.periodic(cron=get_settings().mcp_health_check_cron)
@queue.task(name="mcp.check_active_clients", queue="maintenance")
async def check_active_clients(timestamp: int) -> int:
    """Connect to every active client and record the outcome (``trigger: health``); a client
    that stops answering records ``mcp_client.health_failed``."""
    checked = await mcp_service.check_health(runtime().settings)
    logger.info("MCP clients checked", extra={"count": checked})
    return checked
