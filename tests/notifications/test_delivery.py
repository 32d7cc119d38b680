"""The delivery core: templates render per recipient, preferences pick the channels, and a
draft delivered twice is delivered once."""

from typing import Any

import httpx
from sqlalchemy import func, select

from app.core.db import commit, sessionmaker
from app.core.ids import uuid7
from app.models import EmailDelivery, Notification, NotificationPreference
from app.notifications.service import Draft, deliver
from tests.factories import create_user, events_of


async def _deliver(*drafts: Draft) -> Any:
    async with sessionmaker()() as db:
        result = await deliver(db, list(drafts))
        await commit(db)
    return result


async def _count(model: Any, user_id: Any) -> int:
    async with sessionmaker()() as db:
        return int(
            await db.scalar(select(func.count()).select_from(model).where(model.user_id == user_id)) or 0
        )


async def test_an_event_delivered_twice_notifies_and_mails_once(client: httpx.AsyncClient) -> None:
    user = await create_user("builder")
    event_id = uuid7()
    draft = Draft(
        user_id=user.id,
        type="welcome",
        variables={"name": "Ada <b>", "dashboardUrl": "http://127.0.0.1:8000/"},
        source_event_id=event_id,
    )
    first = await _deliver(draft)
    second = await _deliver(draft)
    assert len(first.notifications) == 1
    assert first.emails == 1
    assert second.notifications == []
    assert second.emails == 0
    assert await _count(Notification, user.id) == 1
    assert await _count(EmailDelivery, user.id) == 1
    async with sessionmaker()() as db:
        email = (await db.scalars(select(EmailDelivery).where(EmailDelivery.user_id == user.id))).one()
    assert email.subject == "Welcome to Bazaar, Ada <b>"
    assert "Ada &lt;b&gt;" in email.html_body
    assert "<b>" not in email.html_body
    sent = [e for e in await events_of("notification.sent") if e["payload"]["userId"] == str(user.id)]
    assert len(sent) == 1
    assert sent[0]["payload"]["channels"] == ["in_app", "email"]


async def test_preferences_choose_the_channels(client: httpx.AsyncClient) -> None:
    user = await create_user("builder")
    async with sessionmaker()() as db:
        db.add(NotificationPreference(user_id=user.id, category="account", in_app=False, email=True))
        await commit(db)
    result = await _deliver(
        Draft(
            user_id=user.id,
            type="welcome",
            variables={"name": "A", "dashboardUrl": "x"},
            source_event_id=uuid7(),
        )
    )
    assert result.notifications == []
    assert result.emails == 1
    assert await _count(Notification, user.id) == 0
