"""Jobs of the payments domain: applying stored provider webhooks."""

import logging
from uuid import UUID

from app.payments.webhooks import PROCESS_WEBHOOK_TASK, stripe_webhooks
from app.worker.queue import queue

logger = logging.getLogger("bazaar.payments.tasks")


@queue.task(name=PROCESS_WEBHOOK_TASK, queue="payments")
async def process_webhook_event(webhook_id: str) -> str:
    """Enqueued with the stored event (``webhooks.StripeWebhooks.receive``). Failures are
    recorded on the event rather than raised: the sweeper below is the one retry mechanism."""
    return await stripe_webhooks.process(UUID(webhook_id))


@queue.periodic(cron="* * * * *")
@queue.task(name="payments.process_pending_webhooks", queue="maintenance")
async def process_pending_webhooks(timestamp: int) -> int:
    """Every minute: events stored but not processed (a job lost to a crash, a failed attempt)."""
    processed = await stripe_webhooks.process_pending()
    if processed:
        logger.info("processed pending webhook events", extra={"count": processed})
    return processed
