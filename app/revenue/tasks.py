"""The daily payout run."""

import logging
from datetime import UTC, datetime

from app.core.runtime import runtime
from app.revenue.schemas import DistributeRequest
from app.revenue.service import revenue_service
from app.worker.queue import queue

logger = logging.getLogger("bazaar.revenue.tasks")


@queue.periodic(cron="30 4 * * *")
@queue.task(name="revenue.distribute_payouts", queue="payouts")
async def distribute_payouts(timestamp: int) -> int:
    """Pay out every available balance once a day. The day is the idempotency key, so a job
    that runs twice for the same day (a retry, two workers) pays nothing twice."""
    day = datetime.fromtimestamp(timestamp, UTC).date()
    result, replayed = await revenue_service.distribute(
        runtime().settings, actor_id=None, key=f"scheduled-{day.isoformat()}", body=DistributeRequest()
    )
    logger.info(
        "payouts distributed",
        extra={
            "day": day.isoformat(),
            "replayed": replayed,
            "payouts": len(result.payouts),
            "failed": sum(1 for p in result.payouts if p.status == "failed"),
            "skipped": len(result.skipped),
        },
    )
    return len(result.payouts)
