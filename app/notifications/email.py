"""Sending the emails ``deliver`` queued: one ``email_deliveries`` row per ``notifications.send_email``
job, through SMTP (``aiosmtplib``) or, by default without ``SMTP_HOST``, into a log file.

The row is the truth about an email, the job only a reminder to look at it:

* ``send_delivery`` locks the row (``FOR UPDATE SKIP LOCKED``) for the whole try, so two workers
  never send one email at the same time, and does nothing for a row that is already ``sent``,
  ``dead`` or ``skipped``: a duplicate job sends nothing.
* The outcome is committed with the row: ``sent`` (and ``email.sent``), or a failed try counted
  in ``attempts`` with ``last_error`` and either ``retrying`` with ``next_attempt_at`` and a new
  job scheduled for then (in the same transaction), or ``dead`` (and ``email.dead``) after
  ``EMAIL_MAX_ATTEMPTS`` tries or at once when the server refuses the recipient or the message
  for good (a 5xx reply to RCPT or DATA).
* A job lost on its way (a worker killed between the try and its commit, a queue wiped) leaves
  the row ``pending``/``retrying``; ``requeue_lost_deliveries`` (every few minutes) queues it
  again. So an email is sent at least once; a resend after a lost commit carries the same
  ``Message-ID``, which mail clients show as one message.
"""

import asyncio
import email.utils
import json
import logging
import os
import random
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from uuid import UUID

import aiosmtplib
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import commit, sessionmaker
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.events import record_event
from app.core.pagination import PageParams, apply_sort, paginate
from app.core.runtime import runtime
from app.models import EmailDelivery, EmailStatus, User, UserStatus
from app.notifications.service import SEND_EMAIL_TASK, defer_send_email

logger = logging.getLogger("bazaar.notifications.email")

FINISHED = frozenset({EmailStatus.SENT, EmailStatus.DEAD, EmailStatus.SKIPPED})
RETRY_CAP = timedelta(hours=1)
# A job scheduled for a retry may start a moment before the time written on the row.
EARLY_SLACK = timedelta(seconds=2)
# A row still waiting this long after it was due has lost its job (see the module docstring).
LOST_AFTER = timedelta(minutes=15)
REQUEUE_BATCH = 500
ERROR_MAX_CHARS = 1000
_SORTABLE = {"createdAt": EmailDelivery.created_at}


class SendFailed(Exception):
    """A try that did not deliver; ``permanent`` when trying again cannot help."""

    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.reason = reason[:ERROR_MAX_CHARS]
        self.permanent = permanent


# --- the message ------------------------------------------------------------------------------------


def build_message(delivery: EmailDelivery, settings: Settings) -> EmailMessage:
    """The MIME message of a delivery: text, plus an HTML alternative when the template has one.
    ``Date`` is when it was queued, so a resend is the same message."""
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = delivery.to_address
    message["Subject"] = delivery.subject
    message["Date"] = email.utils.format_datetime(delivery.created_at.astimezone(UTC))
    message["Message-ID"] = delivery.message_id
    message.set_content(delivery.text_body)
    if delivery.html_body:
        message.add_alternative(delivery.html_body, subtype="html")
    return message


def _refusal(stage: str, code: int, reply: str) -> SendFailed:
    # 5xx to RCPT or DATA: this recipient or this message will never be taken. Every other
    # refusal (4xx, or 5xx to AUTH or MAIL FROM: our configuration, not this email) may pass later.
    return SendFailed(f"{stage} {code} {reply}".strip(), permanent=stage in ("RCPT", "DATA") and code >= 500)


def classify(exc: Exception) -> SendFailed | None:
    """What an ``aiosmtplib.send`` failure means; ``None`` for an exception it does not explain."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refused = exc.recipients
        failures = [_refusal("RCPT", r.code, r.message) for r in refused]
        reason = "; ".join(f.reason for f in failures) or "RCPT refused"
        return SendFailed(reason, permanent=bool(failures) and all(f.permanent for f in failures))
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return _refusal("RCPT", exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return _refusal("DATA", exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return _refusal("MAIL FROM", exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return _refusal("AUTH", exc.code, exc.message)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _refusal("SMTP", exc.code, exc.message)
    if isinstance(exc, TimeoutError):
        return SendFailed(f"timed out: {exc}".rstrip(": "), permanent=False)
    if isinstance(exc, aiosmtplib.SMTPException | OSError):
        return SendFailed(f"{type(exc).__name__}: {exc}", permanent=False)
    return None


async def send_smtp(message: EmailMessage, settings: Settings) -> None:
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    try:
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=password,
            use_tls=settings.smtp_tls,
            start_tls=settings.smtp_starttls and not settings.smtp_tls,
            timeout=settings.smtp_timeout_seconds,
        )
    except Exception as exc:
        failure = classify(exc)
        if failure is None:
            raise
        raise failure from exc


def _append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # One write() on an O_APPEND file: lines of several workers never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


async def write_to_log(message: EmailMessage, delivery: EmailDelivery, settings: Settings) -> None:
    """The ``log`` backend: one JSON object per line in ``<VAR_DIR>/notifications/mail.log``."""
    record = {
        "loggedAt": datetime.now(UTC).isoformat(),
        "messageId": message["Message-ID"],
        "date": message["Date"],
        "from": message["From"],
        "to": message["To"],
        "subject": message["Subject"],
        "text": delivery.text_body,
        "html": delivery.html_body,
    }
    await asyncio.to_thread(_append_line, settings.mail_log_path(), json.dumps(record) + "\n")


async def transmit(delivery: EmailDelivery, settings: Settings) -> None:
    """One try. Raises ``SendFailed`` when it did not deliver."""
    try:
        message = build_message(delivery, settings)
    except (ValueError, TypeError) as exc:  # e.g. a line break in an address: never sendable
        raise SendFailed(f"message could not be built: {exc}", permanent=True) from exc
    if settings.mail_backend() == "smtp":
        await send_smtp(message, settings)
    else:
        await write_to_log(message, delivery, settings)


# --- the job ----------------------------------------------------------------------------------------


def retry_delay(failed_tries: int, base_seconds: float) -> timedelta:
    """Exponential backoff with jitter: about ``base * 2**(tries-1)``, between half of it and all
    of it (so a failing server's emails do not all come back at once), at most ``RETRY_CAP``."""
    ceiling = min(base_seconds * 2 ** (failed_tries - 1), RETRY_CAP.total_seconds())
    return timedelta(seconds=ceiling / 2 + random.uniform(0, ceiling / 2))


def _event_payload(delivery: EmailDelivery, settings: Settings) -> dict[str, object]:
    return {
        "deliveryId": str(delivery.id),
        "userId": str(delivery.user_id),
        "type": delivery.type,
        "notificationId": str(delivery.notification_id) if delivery.notification_id else None,
        "broadcastId": str(delivery.broadcast_id) if delivery.broadcast_id else None,
        "attempts": delivery.attempts,
        "backend": settings.mail_backend(),
    }


async def send_delivery(delivery_id: UUID) -> str:
    """The ``notifications.send_email`` job: try to send one email and record the outcome.

    Returns the row's status after the job (``sent``, ``retrying``, ``dead``, ``skipped``; an
    email already finished is left as it is), or ``missing`` (no such row), ``busy`` (another
    worker is trying it right now) or ``not_due`` (a retry scheduled for later)."""
    settings = runtime().settings
    async with sessionmaker()() as db:
        delivery = await db.scalar(
            select(EmailDelivery).where(EmailDelivery.id == delivery_id).with_for_update(skip_locked=True)
        )
        if delivery is None:
            exists = await db.scalar(select(EmailDelivery.id).where(EmailDelivery.id == delivery_id))
            return "missing" if exists is None else "busy"
        if delivery.status in FINISHED:
            return delivery.status
        now = datetime.now(UTC)
        if delivery.next_attempt_at is not None and delivery.next_attempt_at > now + EARLY_SLACK:
            return "not_due"
        user = await db.get(User, delivery.user_id)
        if user is None or user.status == UserStatus.DELETED:
            delivery.status = EmailStatus.SKIPPED
            delivery.last_error = "the recipient's account was deleted"
            delivery.next_attempt_at = None
            await commit(db)
            return str(EmailStatus.SKIPPED)

        delivery.attempts += 1
        try:
            await transmit(delivery, settings)
        except SendFailed as failure:
            await _record_failure(db, delivery, failure, settings)
        except Exception as exc:
            # Not an SMTP answer (a bug, a full disk): still a try, so it cannot loop forever.
            logger.exception("email send failed unexpectedly", extra={"deliveryId": str(delivery.id)})
            await _record_failure(
                db, delivery, SendFailed(f"{type(exc).__name__}: {exc}", permanent=False), settings
            )
        else:
            delivery.status = EmailStatus.SENT
            delivery.sent_at = datetime.now(UTC)
            delivery.next_attempt_at = None
            await record_event(
                db,
                "email.sent",
                actor_id=None,
                subject_id=delivery.id,
                payload=_event_payload(delivery, settings),
            )
        status = str(delivery.status)
        await commit(db)
        return status


async def _record_failure(
    db: AsyncSession, delivery: EmailDelivery, failure: SendFailed, settings: Settings
) -> None:
    delivery.last_error = failure.reason
    log_extra = {"deliveryId": str(delivery.id), "attempts": delivery.attempts, "error": failure.reason}
    if failure.permanent or delivery.attempts >= settings.email_max_attempts:
        delivery.status = EmailStatus.DEAD
        delivery.next_attempt_at = None
        await record_event(
            db,
            "email.dead",
            actor_id=None,
            subject_id=delivery.id,
            payload={
                **_event_payload(delivery, settings),
                "error": failure.reason,
                "permanent": failure.permanent,
            },
        )
        logger.error("email given up", extra=log_extra)
        return
    delay = retry_delay(delivery.attempts, settings.email_retry_base_seconds)
    delivery.status = EmailStatus.RETRYING
    delivery.next_attempt_at = datetime.now(UTC) + delay
    # Without a delay the job is simply due now (the database's clock may lag ours a little).
    await defer_send_email(db, [delivery.id], at=delivery.next_attempt_at if delay else None)
    logger.warning(
        "email try failed, retrying", extra={**log_extra, "retryAt": delivery.next_attempt_at.isoformat()}
    )


async def requeue_lost_deliveries() -> int:
    """Queue a job again for each email waiting well past its time with no job waiting for it
    (``LOST_AFTER``). Harmless when the old job turns up after all: ``send_delivery`` sends once."""
    cutoff = datetime.now(UTC) - LOST_AFTER
    async with sessionmaker()() as db:
        lost = list(
            (
                await db.scalars(
                    text(
                        """
                        SELECT d.id FROM email_deliveries d
                        WHERE d.status IN ('pending', 'retrying')
                          AND COALESCE(d.next_attempt_at, d.created_at) < :cutoff
                          AND NOT EXISTS (
                            SELECT 1 FROM procrastinate_jobs j
                            WHERE j.task_name = :task AND j.status = 'todo'
                              AND j.args ->> 'delivery_id' = d.id::text
                          )
                        ORDER BY d.id
                        LIMIT :batch
                        """
                    ),
                    {"cutoff": cutoff, "task": SEND_EMAIL_TASK, "batch": REQUEUE_BATCH},
                )
            ).all()
        )
        await defer_send_email(db, lost)
        await commit(db)
    if lost:
        logger.warning("requeued emails that lost their job", extra={"count": len(lost)})
    return len(lost)


# --- the administrators' dead letters ----------------------------------------------------------------


async def list_deliveries(
    db: AsyncSession, status: str | None, params: PageParams
) -> tuple[list[EmailDelivery], int]:
    """One page of emails, newest first unless ``params.sort`` says ``createdAt``, optionally of one
    status (``dead``: the dead letters)."""
    stmt = select(EmailDelivery)
    if status is not None:
        if status not in set(EmailStatus):
            raise ValidationFailed(
                f"Unknown email status {status!r}",
                code="email_status_invalid",
                details={"allowed": [str(s) for s in EmailStatus]},
            )
        stmt = stmt.where(EmailDelivery.status == status)
    stmt = apply_sort(stmt, params.sort, _SORTABLE, default="-createdAt", tiebreak=EmailDelivery.id)
    return await paginate(db, stmt, params)


async def retry_delivery(db: AsyncSession, delivery_id: UUID) -> EmailDelivery:
    """A dead email back to ``pending`` with its tries reset, its job queued in the caller's
    transaction. ``last_error`` keeps why it died until the next try."""
    delivery = await db.scalar(select(EmailDelivery).where(EmailDelivery.id == delivery_id).with_for_update())
    if delivery is None:
        raise NotFound("Email not found", code="email_not_found")
    if delivery.status != EmailStatus.DEAD:
        raise Conflict(
            "Only an email given up as dead can be retried",
            code="email_not_dead",
            details={"status": delivery.status},
        )
    delivery.status = EmailStatus.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = None
    await db.flush()
    await defer_send_email(db, [delivery.id])
    return delivery
