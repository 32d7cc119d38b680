"""Notifications on the wire (camelCase), the same shape in the inbox and on the realtime stream."""

from datetime import datetime
from typing import Any
from uuid import UUID

from app.core.schemas import Schema
from app.models import Notification


class NotificationOut(Schema):
    """The seed's Notification (id, userId, type, title, message, read, createdAt), plus its
    category, the ids it is about and when it was read."""

    id: UUID
    user_id: UUID
    type: str
    category: str
    title: str
    message: str
    data: dict[str, Any]
    read: bool
    read_at: datetime | None
    created_at: datetime


def notification_json(notification: Notification) -> dict[str, Any]:
    """JSON-ready dict of a notification (for the realtime stream, which sends it as is)."""
    return NotificationOut.model_validate(notification).model_dump(mode="json", by_alias=True)
