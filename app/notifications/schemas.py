"""Notifications on the wire (camelCase), the same shape in the inbox and on the realtime stream."""

from datetime import datetime
from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from app.core.schemas import NO_NUL, InputSchema, Page, Schema
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


# --- the API (app/notifications/router.py) ------------------------------------------------------

VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
Variables = Annotated[dict[VariableName, Any], Field(max_length=50)]

Title = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
Message = Annotated[str, StringConstraints(min_length=1, max_length=5000, pattern=NO_NUL)]
TemplateTitle = Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=NO_NUL)]
TemplateMessage = Annotated[str, StringConstraints(min_length=1, max_length=20_000, pattern=NO_NUL)]
TemplateHtml = Annotated[str, StringConstraints(max_length=100_000, pattern=NO_NUL)]


class NotificationSend(InputSchema):
    """One notification to one user: a template ``type`` with its ``variables``, or a plain
    ``title`` and ``message`` (the ``announcement`` template)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "userId": "0192f0c0-0000-7000-8000-000000000000",
                    "title": "Scheduled maintenance",
                    "message": "The dashboard is read-only on Sunday from 02:00 to 03:00 UTC.",
                    "email": False,
                },
                {
                    "userId": "0192f0c0-0000-7000-8000-000000000000",
                    "type": "welcome",
                    "variables": {"name": "Ada", "dashboardUrl": "https://bazaar.example.com/"},
                },
            ]
        }
    )

    user_id: UUID
    type: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)] | None = Field(
        None,
        description="A template type (`GET /api/notifications/templates`); omit it to send `title` "
        "and `message` as an announcement",
    )
    variables: Variables | None = Field(None, description="Exactly the template's variables")
    title: Title | None = None
    message: Message | None = None
    data: dict[str, Any] = Field(
        default_factory=dict, description="Ids and links the dashboard uses to open what it is about"
    )
    email: bool = Field(
        True, strict=True, description="false: in the app only, whatever the user's email preference"
    )

    @model_validator(mode="after")
    def _template_or_text(self) -> Self:
        if self.type is not None:
            if self.title is not None or self.message is not None:
                raise ValueError("give either a template type with its variables, or a title and a message")
        elif self.title is None or self.message is None:
            raise ValueError("without a template type, title and message are required")
        elif self.variables is not None:
            raise ValueError("variables go with a template type")
        return self


class SendResult(Schema):
    """What a send delivered: the in-app notification (null when the user turned the in-app
    channel of this category off) and whether an email was queued."""

    notification: NotificationOut | None
    emailed: bool


class NotificationList(Page[NotificationOut]):
    unread_count: int = Field(description="The user's unread notifications, whatever the filter")


class ReadAllResult(Schema):
    updated: int = Field(description="How many notifications this call marked read")


class ChannelsOut(Schema):
    in_app: bool
    email: bool


class ChannelsUpdate(InputSchema):
    in_app: bool | None = Field(None, strict=True)
    email: bool | None = Field(None, strict=True)


class Preferences(Schema):
    """Every category's channels: the user's choice, else the category's default."""

    account: ChannelsOut
    listings: ChannelsOut
    sales: ChannelsOut
    purchases: ChannelsOut
    payouts: ChannelsOut
    billing: ChannelsOut
    widgets: ChannelsOut
    operations: ChannelsOut
    announcements: ChannelsOut


class PreferencesUpdate(InputSchema):
    """Only the categories given change, and in them only the channels given."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"sales": {"email": False}, "announcements": {"inApp": True, "email": False}}]
        }
    )

    account: ChannelsUpdate | None = None
    listings: ChannelsUpdate | None = None
    sales: ChannelsUpdate | None = None
    purchases: ChannelsUpdate | None = None
    payouts: ChannelsUpdate | None = None
    billing: ChannelsUpdate | None = None
    widgets: ChannelsUpdate | None = None
    operations: ChannelsUpdate | None = None
    announcements: ChannelsUpdate | None = None


class TemplateOut(Schema):
    type: str
    category: str
    description: str
    variables: list[str]
    title: str
    message: str
    html: str
    edited_by: UUID | None = Field(description="The administrator who last edited it; null: as shipped")
    updated_at: datetime | None = Field(description="null: not stored yet (the shipped file is used)")


class TemplateUpdate(InputSchema):
    """Only the fields given change. ``title``, ``message`` and ``html`` are Jinja2 over the
    template's variables."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"title": "Welcome aboard, {{ name }}", "html": "<p>Hello {{ name }}!</p>"}]
        }
    )

    title: TemplateTitle | None = None
    message: TemplateMessage | None = None
    html: TemplateHtml | None = None
    description: Annotated[str, StringConstraints(max_length=1000, pattern=NO_NUL)] | None = None
    variables: Annotated[list[VariableName], Field(max_length=50)] | None = Field(
        None,
        description="The variables the code gives this type; only a template no code sends may change them",
    )


class TemplatePreview(InputSchema):
    """Variables to render with, and optionally unsaved ``title``/``message``/``html`` to try."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"variables": {"name": "Ada", "dashboardUrl": "https://bazaar.example.com/"}}]
        }
    )

    variables: Variables = Field(default_factory=dict)
    title: TemplateTitle | None = None
    message: TemplateMessage | None = None
    html: TemplateHtml | None = None


class RenderedOut(Schema):
    type: str
    title: str
    message: str
    html: str


class BroadcastCreate(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"audience": "builder", "title": "Payouts on Friday", "message": "...", "sendEmail": True}
            ]
        }
    )

    audience: Annotated[str, StringConstraints(min_length=1, max_length=32)] = Field(
        "all", description="`all`, or a persona: `super_admin`, `builder`, `end_user`"
    )
    title: Title
    message: Message
    send_email: bool = Field(
        False, strict=True, description="Also by email, to those whose preference allows it"
    )


class BroadcastOut(Schema):
    id: UUID
    audience: str
    title: str
    message: str
    send_email: bool
    status: str = Field(description="`queued`, `running`, `done`")
    total: int | None = Field(description="Recipients, once the worker has counted them")
    delivered: int
    created_by: UUID
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class EmailDeliveryOut(Schema):
    id: UUID
    user_id: UUID
    notification_id: UUID | None
    type: str
    to_address: str
    subject: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    sent_at: datetime | None
    created_at: datetime
