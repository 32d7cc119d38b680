"""Wire shapes of the widgets' management API and of the runtime API ``widget/embed.js`` calls."""

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    field_validator,
    model_validator,
)

from app.core.schemas import NO_NUL, InputSchema, PaginationInfo, Schema
from app.core.usage import UsageKind, UtcDatetime
from app.widgets.security import InvalidOrigin, normalise_origin

MAX_ORIGINS = 50
MAX_BEACONS = 100

Colour = Annotated[str, StringConstraints(pattern=r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", to_lower=True)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=NO_NUL)]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=NO_NUL)]


def _https_url(value: str) -> str:
    if not value.lower().startswith("https://") or len(value) <= len("https://"):
        raise ValueError("must be an https:// URL")
    if any(ch.isspace() for ch in value):
        raise ValueError("must not contain spaces")
    return value


HttpsUrl = Annotated[str, StringConstraints(max_length=2000, pattern=NO_NUL), AfterValidator(_https_url)]


def _origin(value: str) -> str:
    try:
        return normalise_origin(value, allow_wildcard=True)
    except InvalidOrigin as exc:
        raise ValueError(str(exc)) from exc


Origin = Annotated[str, StringConstraints(max_length=300), AfterValidator(_origin)]

DEFAULT_APPEARANCE: dict[str, Any] = {
    "primaryColor": "#4f46e5",
    "textColor": "#ffffff",
    "position": "bottom-right",
    "title": "Chat with us",
    "greeting": "Hi! How can I help?",
    "avatarUrl": None,
    "launcherText": "Chat",
}
DEFAULT_RATE_LIMITS: dict[str, int] = {"messagesPerMinutePerVisitor": 10, "beaconsPerMinutePerVisitor": 120}


class AppearanceIn(InputSchema):
    """Every field optional: on an update, only the fields given change."""

    primary_color: Colour | None = None
    text_color: Colour | None = None
    position: Literal["bottom-right", "bottom-left"] | None = None
    title: ShortText | None = None
    greeting: LongText | None = None
    avatar_url: HttpsUrl | None = None
    launcher_text: ShortText | None = None


class RateLimitsIn(InputSchema):
    messages_per_minute_per_visitor: int | None = Field(None, ge=1, le=120, strict=True)
    beacons_per_minute_per_visitor: int | None = Field(None, ge=1, le=600, strict=True)


def _unique_origins(origins: list[str]) -> list[str]:
    return list(dict.fromkeys(origins))


Origins = Annotated[
    list[Origin], Field(min_length=1, max_length=MAX_ORIGINS), AfterValidator(_unique_origins)
]


class BehaviourIn(InputSchema):
    allowed_origins: Origins | None = None
    identity_verification: bool | None = Field(None, strict=True)
    rate_limits: RateLimitsIn | None = None


class WidgetCreate(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "projectId": "0192f0c0-0000-7000-8000-000000000000",
                    "allowedOrigins": ["https://shop.example.com", "https://*.example.org"],
                    "name": "Help desk",
                    "appearance": {"primaryColor": "#0f766e", "position": "bottom-left"},
                }
            ]
        }
    )

    project_id: UUID
    allowed_origins: Origins = Field(
        description="Sites that may embed it: `scheme://host[:port]`, or `https://*.example.com` for "
        "its subdomains; `*` is refused"
    )
    name: ShortText | None = None
    appearance: AppearanceIn | None = None
    behaviour: BehaviourIn | None = Field(
        None, description="`identityVerification`, `rateLimits` (origins go in `allowedOrigins`)"
    )

    @field_validator("behaviour")
    @classmethod
    def _no_origins_twice(cls, behaviour: BehaviourIn | None) -> BehaviourIn | None:
        if behaviour is not None and behaviour.allowed_origins is not None:
            raise ValueError("give the origins once, in allowedOrigins")
        return behaviour


class WidgetConfigUpdate(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "appearance": {"title": "Ask our assistant", "primaryColor": "#111"},
                    "behaviour": {"identityVerification": True},
                }
            ]
        }
    )

    name: ShortText | None = None
    appearance: AppearanceIn | None = None
    behaviour: BehaviourIn | None = None


class Appearance(Schema):
    primary_color: str
    text_color: str
    position: Literal["bottom-right", "bottom-left"]
    title: str
    greeting: str
    avatar_url: str | None
    launcher_text: str


class RateLimits(Schema):
    messages_per_minute_per_visitor: int
    beacons_per_minute_per_visitor: int


class Behaviour(Schema):
    allowed_origins: list[str]
    identity_verification: bool
    rate_limits: RateLimits


class WidgetConfig(Schema):
    """The seed's WidgetConfig."""

    appearance: Appearance
    behaviour: Behaviour


class WidgetOut(Schema):
    """The seed's Widget. ``status``: ``active`` (serves new sessions) or ``unavailable`` (its
    purchase was refunded, the listing delisted or back in review, or the project deleted:
    ``statusReason``)."""

    id: UUID
    project_id: UUID
    user_id: UUID
    name: str
    kind: Literal["live", "preview"]
    status: Literal["active", "unavailable"]
    status_reason: str | None = None
    public_key: str
    config: WidgetConfig
    code: str = Field(description="The snippet to paste into the site's HTML")
    created_at: datetime
    updated_at: datetime


class WidgetCreated(WidgetOut):
    secret_key: str | None = Field(
        None,
        description="Signs your users' ids for identity verification: shown only in this answer, "
        "and in a retry with the same Idempotency-Key within 10 minutes unless rotated since "
        "(absent otherwise: rotate the secret to get a new one); keep it on your server",
    )


class SecretRotated(Schema):
    id: UUID
    secret_key: str


def _decimal_text(amount: Decimal) -> str:
    return format(amount.normalize(), "f")


# US dollars as an exact decimal string on the wire (answers cost fractions of a cent).
Usd = Annotated[Decimal, PlainSerializer(_decimal_text, return_type=str, when_used="json")]


class CustomerUsageOut(Schema):
    customer_id: str = Field(description="The host site's user id, as its verified identity named it")
    messages: int = Field(description="Questions the customer asked")
    answers: int = Field(description="Answers stored without an error")
    input_tokens: int
    output_tokens: int
    cost_usd: Usd = Field(
        description="US dollars (a decimal string) of the answers whose model has a price; "
        "`unpricedAnswers` are not in it"
    )
    unpriced_answers: int
    conversations: int = Field(description="Conversations with a message in the period")
    first_seen_at: datetime = Field(description="The customer's first message in the period")
    last_seen_at: datetime = Field(description="The customer's last message in the period")


class WidgetCustomers(Schema):
    """Usage per verified customer, counted from the stored messages (exact, not the beacons)."""

    widget_id: UUID
    from_: date = Field(alias="from")
    to: date
    items: list[CustomerUsageOut]
    pagination: PaginationInfo


# --- runtime --------------------------------------------------------------------------------

VisitorId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]


class Identity(InputSchema):
    """The host site's signed-in user, signed by its server with the widget's secret key."""

    user_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
    exp: int = Field(
        ge=1,
        le=2**53 - 1,  # a JavaScript number stays exact
        strict=True,
        description="When the signature expires: Unix seconds, at most 24 hours ahead",
    )
    signature: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")] = Field(
        description='hex(HMAC-SHA256(secretKey, "widgetId|userId|exp")): 64 hex digits'
    )


class SessionRequest(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"widgetKey": "pk_live_3kXw...", "visitorId": "v_8f2a61c0d9e4"}]}
    )

    widget_key: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    visitor_id: VisitorId | None = Field(None, description="Kept by the widget in localStorage")
    identity: Identity | None = Field(
        None,
        description="The host site's user: {userId, exp, signature = hex HMAC-SHA256(secretKey, "
        '"widgetId|userId|exp")}',
    )


class Quota(Schema):
    limit: int | None = Field(description="Messages a month; null: unlimited")
    used: int
    remaining: int | None


class SessionOut(Schema):
    token: str
    expires_at: datetime
    expires_in: int = Field(
        description="Seconds the token is valid from now, as the server counts: a page whose clock "
        "disagrees with the server's still knows when to renew it"
    )
    widget_id: UUID
    visitor_id: str
    appearance: Appearance
    quota: Quota


class WidgetChatRequest(InputSchema):
    message: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    conversation_id: UUID | None = None


class Beacon(InputSchema):
    event_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$")]
    kind: UsageKind
    count: int = Field(1, ge=0, le=1_000_000, strict=True)
    occurred_at: UtcDatetime = Field(description="The browser's clock, ISO 8601 with a zone")
    latency_ms: int | None = Field(None, ge=0, le=2_147_483_647, strict=True)

    @model_validator(mode="after")
    def _one_per_event(self) -> "Beacon":
        if self.kind != "tokens" and self.count != 1:
            raise ValueError("count is 1 for an impression, open or message (each is one event)")
        return self


class BeaconBatch(InputSchema):
    token: str | None = Field(
        None, max_length=2000, description="The session token (sendBeacon sets no headers)"
    )
    events: list[Beacon] = Field(min_length=1)


class BeaconsAccepted(Schema):
    accepted: int
