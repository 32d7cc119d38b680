"""The notifications' jobs: sending one queued email, and requeueing emails whose job was lost."""

from uuid import UUID

from app.notifications.email import requeue_lost_deliveries, send_delivery
from app.notifications.service import SEND_EMAIL_TASK
from app.worker.queue import queue


@queue.task(name=SEND_EMAIL_TASK, queue="mail")
async def send_email(delivery_id: str) -> str:
    """Enqueued with the email by ``service.deliver`` (and again by each retry). A failed try is
    recorded on the email and scheduled again by the email itself; the job succeeds."""
    return await send_delivery(UUID(delivery_id))


@queue.periodic(cron="*/5 * * * *")
@queue.task(name="notifications.requeue_lost_emails", queue="maintenance")
async def requeue_lost_emails(timestamp: int) -> int:
    """Every five minutes: emails long past due with no job waiting for them get one again."""
    return await requeue_lost_deliveries()
