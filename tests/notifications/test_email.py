"""Email: a queued email reaches a real SMTP server (an ``aiosmtpd`` sink on 127.0.0.1) once,
through the real procrastinate worker; a server that refuses is tried again and finally given
up as dead; without SMTP the email goes to a log file; the templates are seeded as data."""

import asyncio
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from aiosmtpd.controller import Controller
from procrastinate import PsycopgConnector
from sqlalchemy import select, text, update

from app.core.config import Settings
from app.core.db import commit, sessionmaker
from app.core.errors import Conflict, ValidationFailed
from app.core.ids import uuid7
from app.core.pagination import PageParams
from app.models import EmailDelivery, NotificationTemplate
from app.notifications import templates
from app.notifications.email import list_deliveries, retry_delivery, send_delivery
from app.notifications.service import Draft, deliver
from app.notifications.tasks import requeue_lost_emails, send_email
from app.notifications.templates import file_templates, seed_templates
from app.worker.queue import libpq_url, queue
from tests.factories import create_user, events_of, signed_in
from tests.test_cli import bazaar

FIRST_PAGE = PageParams(page=1, limit=20, sort=None)

# --- the SMTP sink --------------------------------------------------------------------------------


class Sink:
    """An SMTP server's handler: keeps what it accepts; ``refusals`` are the replies to the next
    RCPT commands (then it accepts), ``always`` the reply to every one."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refusals: list[str] = []
        self.always: str | None = None
        self.rcpt_count = 0
        # Set, the sink holds every DATA until ``release`` is set.
        self.in_data = threading.Event()
        self.release: threading.Event | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        self.rcpt_count += 1
        if self.always is not None:
            return self.always
        if self.refusals:
            return self.refusals.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.in_data.set()
        if self.release is not None:
            await asyncio.to_thread(self.release.wait, 10)
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        if handler.release is not None:
            handler.release.set()
        controller.stop()


@pytest.fixture
def settings_changes(sink: tuple[Sink, int]) -> dict[str, Any]:
    return {
        "smtp_host": "127.0.0.1",
        "smtp_port": sink[1],
        "smtp_starttls": False,
        "smtp_timeout_seconds": 10,
        "email_max_attempts": 3,
        "email_retry_base_seconds": 0,
    }


# --- steps ----------------------------------------------------------------------------------------


async def queue_welcome(user_id: UUID, name: str = "Ada <b>") -> UUID:
    """``deliver`` a welcome notification; the id of its queued email."""
    draft = Draft(
        user_id=user_id,
        type="welcome",
        variables={"name": name, "dashboardUrl": "http://127.0.0.1:8000/dashboard?a=1&b=2"},
        source_event_id=uuid7(),
    )
    async with sessionmaker()() as db:
        delivered = await deliver(db, [draft])
        await commit(db)
    assert delivered.emails == 1
    async with sessionmaker()() as db:
        return (await db.scalars(select(EmailDelivery.id).where(EmailDelivery.user_id == user_id))).one()


async def run_mail_worker(settings: Settings) -> None:
    """The real procrastinate worker on the test database, until no mail job is due."""
    connector = PsycopgConnector(conninfo=libpq_url(settings.database_url or ""))
    with queue.replace_connector(connector) as app:
        async with app.open_async():
            await app.run_worker_async(
                queues=["mail"], wait=False, listen_notify=False, install_signal_handlers=False
            )


async def email_row(delivery_id: UUID) -> EmailDelivery:
    async with sessionmaker()() as db:
        row = await db.get(EmailDelivery, delivery_id)
    assert row is not None
    return row


async def send_jobs(delivery_id: UUID) -> list[tuple[str, datetime]]:
    async with sessionmaker()() as db:
        rows = await db.execute(
            text(
                "SELECT status::text, scheduled_at FROM procrastinate_jobs "
                "WHERE task_name = 'notifications.send_email' AND args ->> 'delivery_id' = :id ORDER BY id"
            ),
            {"id": str(delivery_id)},
        )
        return [(str(status), scheduled) for status, scheduled in rows.all()]


def parts(message: EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): str(part.get_content()) for part in message.iter_parts()}


# --- sending --------------------------------------------------------------------------------------


async def test_a_queued_email_arrives_once_with_its_text_and_escaped_html(
    client: httpx.AsyncClient, sink: tuple[Sink, int], settings: Settings
) -> None:
    server, _ = sink
    user = await create_user("builder")
    delivery_id = await queue_welcome(user.id)

    await run_mail_worker(settings)
    # A duplicate job (a job run twice, a sweep racing the worker) sends nothing more.
    assert await send_email(delivery_id=str(delivery_id)) == "sent"
    await run_mail_worker(settings)

    assert len(server.messages) == 1
    message = server.messages[0]
    assert server.envelopes == [("no-reply@bazaar.local", [user.email])]
    assert message["From"] == "Bazaar <no-reply@bazaar.local>"
    assert message["To"] == user.email
    assert message["Subject"] == "Welcome to Bazaar, Ada <b>"
    row = await email_row(delivery_id)
    assert message["Message-ID"] == row.message_id
    assert message.get_content_type() == "multipart/alternative"
    body = parts(message)
    assert "Hi Ada <b>," in body["text/plain"]
    assert "Hi Ada &lt;b&gt;," in body["text/html"]
    assert "<b>" not in body["text/html"]
    assert 'href="http://127.0.0.1:8000/dashboard?a=1&amp;b=2"' in body["text/html"]

    assert (row.status, row.attempts, row.last_error) == ("sent", 1, None)
    assert row.sent_at is not None
    sent = await events_of("email.")
    assert [(e["type"], e["subject_id"]) for e in sent] == [("email.sent", str(delivery_id))]
    assert sent[0]["payload"]["userId"] == str(user.id)
    assert sent[0]["payload"]["backend"] == "smtp"


async def test_two_workers_trying_one_email_at_once_send_it_once(
    client: httpx.AsyncClient, sink: tuple[Sink, int]
) -> None:
    server, _ = sink
    server.release = threading.Event()
    user = await create_user("builder")
    delivery_id = await queue_welcome(user.id)

    first = asyncio.create_task(send_delivery(delivery_id))
    assert await asyncio.to_thread(server.in_data.wait, 10)  # the first is in the middle of DATA
    assert await send_delivery(delivery_id) == "busy"
    server.release.set()
    assert await first == "sent"
    assert await send_delivery(delivery_id) == "sent"
    assert len(server.messages) == 1


async def test_a_server_that_asks_to_try_later_gets_the_email_on_a_later_try(
    client: httpx.AsyncClient, sink: tuple[Sink, int], settings: Settings
) -> None:
    server, _ = sink
    server.refusals = ["451 try later", "451 try later"]
    user = await create_user("builder")
    delivery_id = await queue_welcome(user.id)

    await run_mail_worker(settings)

    assert server.rcpt_count == 3
    assert len(server.messages) == 1
    row = await email_row(delivery_id)
    assert (row.status, row.attempts) == ("sent", 3)
    assert [status for status, _ in await send_jobs(delivery_id)] == ["succeeded"] * 3


async def test_an_email_the_server_always_refuses_for_now_dies_after_the_last_try(
    client: httpx.AsyncClient, sink: tuple[Sink, int], settings: Settings
) -> None:
    server, _ = sink
    server.always = "451 try later"
    user = await create_user("builder")
    delivery_id = await queue_welcome(user.id)

    await run_mail_worker(settings)

    assert server.rcpt_count == 3
    assert server.messages == []
    row = await email_row(delivery_id)
    assert (row.status, row.attempts, row.next_attempt_at) == ("dead", 3, None)
    assert row.last_error == "RCPT 451 try later"
    [dead] = await events_of("email.dead")
    assert dead["payload"]["attempts"] == 3
    assert dead["payload"]["permanent"] is False
    assert dead["payload"]["error"] == "RCPT 451 try later"
    assert await events_of("email.sent") == []


async def test_a_refused_recipient_is_dead_at_once(
    client: httpx.AsyncClient, sink: tuple[Sink, int], settings: Settings
) -> None:
    server, _ = sink
    server.always = "550 no such mailbox"
    user = await create_user("builder")
    delivery_id = await queue_welcome(user.id)

    await run_mail_worker(settings)

    assert server.rcpt_count == 1
    row = await email_row(delivery_id)
    assert (row.status, row.attempts, row.last_error) == ("dead", 1, "RCPT 550 no such mailbox")
    [dead] = await events_of("email.dead")
    assert dead["payload"]["permanent"] is True


# Nothing listens on port 1: the connection is refused.
@pytest.mark.parametrize(
    "settings_changes",
    [{"smtp_host": "127.0.0.1", "smtp_port": 1, "smtp_starttls": False, "email_retry_base_seconds": 600}],
)
async def test_a_server_that_is_down_is_tried_again_later(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await create_user("builder")
    delivery_id = await queue_welcome(user.id)

    await run_mail_worker(settings)

    row = await email_row(delivery_id)
    assert (row.status, row.attempts) == ("retrying", 1)
    assert row.last_error is not None
    assert "ConnectError" in row.last_error
    # The next try waits 5 to 10 minutes (600 s with jitter), and a job is scheduled for then.
    assert row.next_attempt_at is not None
    wait = row.next_attempt_at - datetime.now(UTC)
    assert timedelta(seconds=290) < wait <= timedelta(seconds=600)
    jobs = await send_jobs(delivery_id)
    assert [status for status, _ in jobs] == ["succeeded", "todo"]
    assert jobs[1][1] == row.next_attempt_at
    # A job that turns up early leaves it for the scheduled one.
    assert await send_delivery(delivery_id) == "not_due"
    assert (await email_row(delivery_id)).attempts == 1


async def test_an_email_to_an_account_deleted_meanwhile_is_skipped(
    client: httpx.AsyncClient, sink: tuple[Sink, int], settings: Settings
) -> None:
    server, _ = sink
    account = await signed_in(client, "builder")
    delivery_id = await queue_welcome(account.id)
    deleted = await client.delete(f"/api/users/{account.id}", headers=account.headers)
    assert deleted.status_code == 204, deleted.text

    await run_mail_worker(settings)

    assert server.rcpt_count == 0
    row = await email_row(delivery_id)
    assert (row.status, row.attempts) == ("skipped", 0)


async def test_an_email_whose_job_was_lost_is_queued_again_and_sent_once(
    client: httpx.AsyncClient, sink: tuple[Sink, int], settings: Settings
) -> None:
    server, _ = sink
    user = await create_user("builder")
    lost = await queue_welcome(user.id)
    recent = await queue_welcome((await create_user("builder")).id)
    async with sessionmaker()() as db:
        await db.execute(text("DELETE FROM procrastinate_jobs WHERE task_name = 'notifications.send_email'"))
        await db.execute(
            update(EmailDelivery)
            .where(EmailDelivery.id == lost)
            .values(created_at=datetime.now(UTC) - timedelta(hours=1))
        )
        await db.commit()

    now = int(datetime.now(UTC).timestamp())
    assert await requeue_lost_emails(timestamp=now) == 1
    assert await requeue_lost_emails(timestamp=now) == 0  # its job is waiting now
    await run_mail_worker(settings)

    assert [m["To"] for m in server.messages] == [user.email]
    assert (await email_row(lost)).status == "sent"
    assert (await email_row(recent)).status == "pending"  # not late yet: its job may still come


# --- dead letters ---------------------------------------------------------------------------------


async def test_an_administrator_can_list_dead_emails_and_send_one_again(
    client: httpx.AsyncClient, sink: tuple[Sink, int], settings: Settings
) -> None:
    server, _ = sink
    server.always = "550 mailbox full"
    user = await create_user("builder")
    dead_id = await queue_welcome(user.id)
    await run_mail_worker(settings)
    async with sessionmaker()() as db:
        dead, total = await list_deliveries(db, "dead", FIRST_PAGE)
        assert total == 1
        assert [d.id for d in dead] == [dead_id]
        assert (await list_deliveries(db, "sent", FIRST_PAGE))[1] == 0
        with pytest.raises(ValidationFailed):
            await list_deliveries(db, "lost", FIRST_PAGE)

    server.always = None
    async with sessionmaker()() as db:
        again = await retry_delivery(db, dead_id)
        assert (again.status, again.attempts) == ("pending", 0)
        await commit(db)
    await run_mail_worker(settings)

    assert len(server.messages) == 1
    row = await email_row(dead_id)
    assert (row.status, row.attempts) == ("sent", 1)
    async with sessionmaker()() as db:
        with pytest.raises(Conflict):
            await retry_delivery(db, dead_id)


# --- the log backend ------------------------------------------------------------------------------


@pytest.mark.parametrize("settings_changes", [{"email_backend": "log"}])
async def test_without_smtp_the_email_is_written_to_the_mail_log(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    user = await create_user("builder")
    delivery_id = await queue_welcome(user.id)

    await run_mail_worker(settings)

    row = await email_row(delivery_id)
    assert row.status == "sent"
    log = settings.var_dir / "notifications" / "mail.log"
    [line] = log.read_text().splitlines()
    logged = json.loads(line)
    assert logged["to"] == user.email
    assert logged["messageId"] == row.message_id
    assert logged["subject"] == "Welcome to Bazaar, Ada <b>"
    assert "Hi Ada <b>," in logged["text"]
    assert "Hi Ada &lt;b&gt;," in logged["html"]
    [sent] = await events_of("email.sent")
    assert sent["payload"]["backend"] == "log"


def test_the_log_backend_is_the_default_until_an_smtp_host_is_set() -> None:
    assert Settings(_env_file=None).mail_backend() == "log"  # type: ignore[call-arg]
    assert Settings(_env_file=None, smtp_host="mail.example.com").mail_backend() == "smtp"  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="SMTP_HOST"):
        Settings(_env_file=None, email_backend="smtp")  # type: ignore[call-arg]


# --- templates as data ----------------------------------------------------------------------------


async def test_migrating_the_database_seeds_the_shipped_templates(
    client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    result = bazaar(database_url, "db", "upgrade", VAR_DIR=str(tmp_path / "var"))
    assert result.returncode == 0, result.stderr
    async with sessionmaker()() as db:
        seeded = {row.type: row for row in (await db.scalars(select(NotificationTemplate))).all()}
    assert set(seeded) == set(file_templates())
    assert seeded["welcome"].title == file_templates()["welcome"].title


@pytest.fixture
def template_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The shipped template files, copied where a test may change them."""
    folder = tmp_path / "templates"
    shutil.copytree(templates.TEMPLATE_DIR, folder)
    monkeypatch.setattr(templates, "TEMPLATE_DIR", folder)
    file_templates.cache_clear()
    yield folder
    file_templates.cache_clear()


async def test_a_changed_template_file_updates_the_template_unless_an_administrator_edited_it(
    client: httpx.AsyncClient, template_dir: Path
) -> None:
    admin = await create_user("super_admin")
    async with sessionmaker()() as db:
        await seed_templates(db)
        await commit(db)
        await db.execute(
            update(NotificationTemplate)
            .where(NotificationTemplate.type == "announcement")
            .values(title="Admin's {{ title }}", edited_by=admin.id)
        )
        await commit(db)
    for name in ("welcome.toml", "announcement.toml"):
        path = template_dir / name
        path.write_text(path.read_text().replace('title = "', 'title = "New: ', 1))
    file_templates.cache_clear()

    async with sessionmaker()() as db:
        assert await seed_templates(db) == 1
        await commit(db)
        seeded = {row.type: row for row in (await db.scalars(select(NotificationTemplate))).all()}
    assert seeded["welcome"].title == "New: Welcome to Bazaar, {{ name }}"
    assert seeded["announcement"].title == "Admin's {{ title }}"
    async with sessionmaker()() as db:
        assert await seed_templates(db) == 0  # nothing changed since
