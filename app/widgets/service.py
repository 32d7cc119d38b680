"""Widgets: an end user's embeddable chat for a project they bought (or a builder's preview of
their own project), its configuration and keys, and what its visitors may do.

Whether a widget serves is decided from the other domains' services when a visitor opens a
session, and for every chat message from the widget's cached runtime configuration, which the
events of a refund, a listing's moderation or a project's deletion drop as they commit: a
refunded purchase, a delisted listing or a deleted project stop new sessions and the messages of
open ones; a held listing does not (what was bought keeps working). The widget reads those
services as the people it acts for (its owner for purchases, the project's builder for the
project and listing), with no permission beyond theirs.

Quota: an owner's widgets of one project may answer ``widgetMessagesPerMonth`` (the owner's
plan) visitor messages per calendar month (UTC) together, counted in ``widget_usage`` in the
transaction that stores each question; crossing 80 % and 100 % records
``widget.quota_warning`` / ``widget.quota_reached`` once a month per owner and project.
"""

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.permissions import Perm
from app.chat.service import Asker, ChatProject, CustomerUsage, PreparedTurn, chat_service
from app.core.config import Settings
from app.core.crypto import mask, secret_box
from app.core.db import after_commit, commit, sessionmaker
from app.core.errors import AppError, Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized
from app.core.events import on_commit_of, record_event
from app.core.pagination import PageParams, apply_sort, paginate
from app.core.principal import Principal
from app.core.runtime import Runtime, runtime
from app.core.usage import UsageBeacon, publish_usage
from app.marketplace.service import marketplace_service
from app.models import ChatChannel, ListingStatus, OutboxEvent, Project, Widget, WidgetKind
from app.projects.service import project_service
from app.users.service import user_service
from app.widgets.beacons import BeaconEvent, Rule, beacon_gate, parse_rules, stream_entries
from app.widgets.repository import usage_repository, widget_repository
from app.widgets.schemas import (
    DEFAULT_APPEARANCE,
    DEFAULT_RATE_LIMITS,
    Appearance,
    AppearanceIn,
    Behaviour,
    BehaviourIn,
    Quota,
    SessionOut,
    SessionRequest,
    WidgetConfig,
    WidgetConfigUpdate,
    WidgetCreate,
    WidgetOut,
)
from app.widgets.security import (
    InvalidIdentity,
    InvalidOrigin,
    InvalidSession,
    SessionClaims,
    issue_session_token,
    new_public_key,
    new_secret_key,
    normalise_origin,
    origin_allowed,
    read_session_token,
    verify_identity,
)

logger = logging.getLogger("bazaar.widgets")

QUOTA_LIMIT_KEY = "widgetMessagesPerMonth"
WARNING_PERCENT = 80
SECRET_REPLAY_SECONDS = 600  # how long a generate retry may still show the secret key
_SORTABLE = {"createdAt": Widget.created_at, "name": Widget.name}
# How long a process may go on using a widget's runtime configuration it has cached. A change
# is broadcast to every process as it commits (``Cache.invalidate``): this only bounds one
# missed while a process was not listening (Redis reconnecting).
RUNTIME_CONFIG_TTL_SECONDS = 30
_MAX_REMEMBERED = 10_000
# Events after which a widget of the project may serve where it did not, or the other way round
# (``_forget_standing``). Refunds and moderation happen in other domains: their events, recorded
# in the transaction of the change, are what the widgets domain hears of them.
_STANDING_EVENTS = frozenset(
    {
        "purchase.completed",
        "purchase.refunded",
        "listing.published",
        "listing.activated",
        "listing.held",
        "listing.delisted",
        "project.deleted",
    }
)
_WIDGET_FLOOD = "This widget is sending too much usage data; retry later"
_VISITOR_FLOOD = "Too many usage reports; retry later"


class WidgetUnavailable(AppError):
    status_code = 410
    code = "widget_unavailable"


@dataclass(frozen=True)
class Standing:
    """Whether a widget serves new sessions, why not, and its project when it exists."""

    serving: bool
    reason: str | None
    project: Project | None


@dataclass(frozen=True)
class WidgetOwnership:
    """Who may read a widget's analytics besides administrators."""

    project_id: UUID
    builder_id: UUID
    end_user_id: UUID


@dataclass(frozen=True)
class WidgetRuntime:
    """What the beacon route and each chat message need of a widget: served from the cache, not
    the database."""

    widget_id: UUID
    allowed_origins: tuple[str, ...]
    beacons_per_minute_per_visitor: int
    # widget_id, project_id and end_user_id (the owner) as the usage stream spells them.
    ids: dict[str, str]
    # Why it no longer serves (``Standing.reason``: refunded, delisted...); None while it does.
    unavailable: str | None = None


@dataclass(frozen=True)
class MonthQuota:
    """This month's quota counter of a widget's owner and project, read live from Postgres."""

    month: date
    limit: int | None  # None: the plan has no limit
    used: int

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)

    @property
    def percent(self) -> float | None:
        """Used share of the limit, one decimal (100 when a limit of 0 is reached)."""
        if self.limit is None:
            return None
        return 100.0 if self.limit == 0 else round(self.used * 100 / self.limit, 1)


def runtime_config_key(widget_id: UUID) -> str:
    return f"widget-runtime:{widget_id}"


def _acting_as(user_id: UUID, persona: str) -> Principal:
    """A principal for reading other domains' services on a user's behalf: only what that user
    sees as the owner of their own resources, no permissions."""
    return Principal(user_id=user_id, session_id=user_id, persona=persona, personas=(persona,))


def this_month(now: datetime | None = None) -> date:
    now = now or datetime.now(UTC)
    return date(now.year, now.month, 1)


def _next_month(month: date) -> datetime:
    if month.month == 12:
        return datetime(month.year + 1, 1, 1, tzinfo=UTC)
    return datetime(month.year, month.month + 1, 1, tzinfo=UTC)


def embed_code(settings: Settings, public_key: str) -> str:
    base = settings.public_base_url.rstrip("/")
    return f'<script src="{base}/widget/v1/embed.js" data-widget-key="{public_key}" async></script>'


def _merged_appearance(current: dict[str, Any], change: AppearanceIn | None) -> dict[str, Any]:
    """``current`` with the fields ``change`` names; an explicit null resets a field to its default."""
    merged = {**DEFAULT_APPEARANCE, **current}
    if change is not None:
        for key, value in change.model_dump(by_alias=True, exclude_unset=True).items():
            merged[key] = DEFAULT_APPEARANCE[key] if value is None else value
    return merged


def _merged_behaviour(current: dict[str, Any], change: BehaviourIn | None) -> dict[str, Any]:
    """``current`` with the fields ``change`` names (null: unchanged)."""
    merged: dict[str, Any] = {
        "allowedOrigins": list(current.get("allowedOrigins", [])),
        "identityVerification": bool(current.get("identityVerification", False)),
        "rateLimits": {**DEFAULT_RATE_LIMITS, **current.get("rateLimits", {})},
    }
    if change is None:
        return merged
    if change.allowed_origins is not None:
        merged["allowedOrigins"] = change.allowed_origins
    if change.identity_verification is not None:
        merged["identityVerification"] = change.identity_verification
    if change.rate_limits is not None:
        limits = change.rate_limits.model_dump(by_alias=True, exclude_none=True)
        merged["rateLimits"] = {**merged["rateLimits"], **limits}
    return merged


def appearance_of(widget: Widget) -> Appearance:
    return Appearance.model_validate(_merged_appearance(widget.appearance, None))


def behaviour_of(widget: Widget) -> Behaviour:
    return Behaviour.model_validate(_merged_behaviour(widget.behaviour, None))


class WidgetService:
    def __init__(self) -> None:
        # Per process: decoded runtime configurations by their cached bytes, and session tokens
        # whose signature was verified (with the secret that verified them).
        self._runtimes: dict[bytes, WidgetRuntime] = {}
        self._sessions: dict[str, SessionClaims] = {}
        self._sessions_secret = ""

    # --- management -------------------------------------------------------------------------

    async def generate(
        self, db: AsyncSession, settings: Settings, actor: Principal, body: WidgetCreate, key: str
    ) -> tuple[Widget, bool]:
        """A new widget for ``body.project_id``: a ``preview`` for the project's builder, a
        ``live`` one for an end user with a completed purchase. Returns the widget and whether
        this call created it (a retry with the same ``Idempotency-Key`` gets the first one)."""
        earlier = await widget_repository.by_idempotency_key(db, actor.user_id, key)
        if earlier is not None:
            return self._same_request(earlier, body.project_id), False
        project = await self._own_project(db, actor, body.project_id)
        purchase_id: UUID | None = None
        if project is not None:
            kind, builder_id = WidgetKind.PREVIEW, project.user_id
        else:
            purchase = await self._completed_purchase(db, actor.user_id, body.project_id)
            if purchase is None:
                # Visible on the marketplace (404 otherwise), but not bought.
                await marketplace_service.detail(db, actor, body.project_id)
                raise Forbidden(
                    "Buy this project on the marketplace before generating its widget",
                    code="purchase_required",
                )
            try:
                listing = await marketplace_service.detail(db, actor, body.project_id)
            except NotFound:
                # Held or delisted since the purchase: existing widgets of a held listing keep
                # serving, but no new one is made until it is back on the marketplace.
                raise Conflict(
                    "This project is not on the marketplace right now; try again later",
                    code="widget_unavailable",
                ) from None
            kind, builder_id, purchase_id = WidgetKind.LIVE, listing.builder_id, purchase.id
        secret = new_secret_key()
        behaviour = _merged_behaviour({}, body.behaviour)
        behaviour["allowedOrigins"] = body.allowed_origins
        widget_id = await widget_repository.insert_unless_exists(
            db,
            {
                "project_id": body.project_id,
                "user_id": actor.user_id,
                "builder_id": builder_id,
                "purchase_id": purchase_id,
                "kind": kind,
                "name": body.name or ("Preview" if kind == WidgetKind.PREVIEW else "Chat widget"),
                "public_key": new_public_key(),
                "secret_encrypted": secret_box(settings).encrypt(secret),
                "appearance": _merged_appearance({}, body.appearance),
                "behaviour": behaviour,
                "idempotency_key": key,
            },
        )
        if widget_id is None:  # a concurrent request with the same key won
            same = await widget_repository.by_idempotency_key(db, actor.user_id, key)
            assert same is not None
            return self._same_request(same, body.project_id), False
        widget = await widget_repository.get(db, widget_id)
        assert widget is not None
        await record_event(
            db,
            "widget.created",
            actor_id=actor.user_id,
            subject_id=widget.id,
            payload={
                **self._payload(widget),
                "purchaseId": None if purchase_id is None else str(purchase_id),
                "allowedOrigins": behaviour["allowedOrigins"],
            },
        )
        return widget, True

    @staticmethod
    def _same_request(widget: Widget, project_id: UUID) -> Widget:
        if widget.project_id != project_id:
            raise Conflict("This Idempotency-Key was used for another widget", code="idempotency_key_reused")
        return widget

    @staticmethod
    async def _own_project(db: AsyncSession, actor: Principal, project_id: UUID) -> Project | None:
        try:
            project = await project_service.get_visible(db, actor, project_id)
        except NotFound:
            return None
        return project if project.user_id == actor.user_id else None

    @staticmethod
    async def _completed_purchase(db: AsyncSession, user_id: UUID, project_id: UUID) -> Any:
        """The user's completed purchase of the project (a ``PurchaseOut``), or None."""
        owner = _acting_as(user_id, "end_user")
        page = 1
        while True:
            params = PageParams(page=page, limit=100, sort=None)
            items, total = await marketplace_service.purchases_of(db, owner, user_id, params, "completed")
            for purchase in items:
                if purchase.project_id == project_id:
                    return purchase
            if page * params.limit >= total:
                return None
            page += 1

    def secret_of(self, settings: Settings, widget: Widget) -> str:
        return secret_box(settings).decrypt(widget.secret_encrypted)

    def generated_secret(self, settings: Settings, widget: Widget, *, created: bool) -> str | None:
        """The secret key a generate answer shows: always on the call that created the widget;
        on a retry with the same ``Idempotency-Key`` only within ``SECRET_REPLAY_SECONDS`` of
        the creation and if it was not rotated since (a lost answer can be retried, an old key
        cannot read the current secret forever). None: rotate to get a new one."""
        if not created and (
            widget.secret_rotated_at is not None
            or datetime.now(UTC) - widget.created_at > timedelta(seconds=SECRET_REPLAY_SECONDS)
        ):
            return None
        return self.secret_of(settings, widget)

    async def get_visible(
        self, db: AsyncSession, actor: Principal, widget_id: UUID, *, for_update: bool = False
    ) -> Widget:
        """The widget if ``actor`` owns it (or administers the platform); 404 otherwise."""
        widget = await widget_repository.get(db, widget_id, for_update=for_update)
        if widget is None or (widget.user_id != actor.user_id and not actor.can(Perm.PLATFORM_ADMIN)):
            raise NotFound("Widget not found", code="widget_not_found")
        return widget

    async def get_owned(self, db: AsyncSession, actor: Principal, widget_id: UUID) -> Widget:
        """The widget if ``actor`` owns it; administrators may read, not change, others'."""
        widget = await self.get_visible(db, actor, widget_id, for_update=True)
        if widget.user_id != actor.user_id:
            raise Forbidden("Only the widget's owner may change it", code="not_owner")
        return widget

    async def view(self, db: AsyncSession, settings: Settings, widget: Widget) -> WidgetOut:
        standing = await self.standing(db, widget)
        return WidgetOut(
            id=widget.id,
            project_id=widget.project_id,
            user_id=widget.user_id,
            name=widget.name,
            kind=widget.kind,
            status="active" if standing.serving else "unavailable",
            status_reason=standing.reason,
            public_key=widget.public_key,
            config=WidgetConfig(appearance=appearance_of(widget), behaviour=behaviour_of(widget)),
            code=embed_code(settings, widget.public_key),
            created_at=widget.created_at,
            updated_at=widget.updated_at,
        )

    async def list_of_user(
        self, db: AsyncSession, settings: Settings, actor: Principal, user_id: UUID, params: PageParams
    ) -> tuple[list[WidgetOut], int]:
        if not actor.is_self_or(user_id, Perm.USERS_READ_ANY):
            raise NotFound("User not found", code="user_not_found")
        stmt = apply_sort(
            widget_repository.of_user(user_id),
            params.sort,
            _SORTABLE,
            default="-createdAt",
            tiebreak=Widget.id,
        )
        widgets, total = await paginate(db, stmt, params)
        return [await self.view(db, settings, widget) for widget in widgets], total

    async def update_config(
        self, db: AsyncSession, actor: Principal, widget_id: UUID, body: WidgetConfigUpdate
    ) -> Widget:
        widget = await self.get_owned(db, actor, widget_id)
        changed = body.model_dump(by_alias=True, exclude_unset=True)
        if body.name is not None:
            widget.name = body.name
        widget.appearance = _merged_appearance(widget.appearance, body.appearance)
        widget.behaviour = _merged_behaviour(widget.behaviour, body.behaviour)
        widget.updated_at = datetime.now(UTC)
        await db.flush()
        cache = runtime().cache

        async def forget_runtime() -> None:
            await cache.invalidate(runtime_config_key(widget.id))

        after_commit(db, forget_runtime)
        await record_event(
            db,
            "widget.config_updated",
            actor_id=actor.user_id,
            subject_id=widget.id,
            payload={**self._payload(widget), "changed": sorted(changed)},
        )
        return widget

    async def rotate_secret(
        self, db: AsyncSession, settings: Settings, actor: Principal, widget_id: UUID
    ) -> tuple[Widget, str]:
        widget = await self.get_owned(db, actor, widget_id)
        secret = new_secret_key()
        widget.secret_encrypted = secret_box(settings).encrypt(secret)
        widget.updated_at = widget.secret_rotated_at = datetime.now(UTC)
        await db.flush()
        await record_event(
            db,
            "widget.secret_rotated",
            actor_id=actor.user_id,
            subject_id=widget.id,
            payload={**self._payload(widget), "secretKeyHint": mask(secret)},
        )
        return widget, secret

    async def ownership(self, widget_id: UUID) -> WidgetOwnership | None:
        """Owner and builder of a widget, for the analytics domain (None: no such widget)."""
        async with sessionmaker()() as db:
            widget = await widget_repository.get(db, widget_id)
        if widget is None:
            return None
        return WidgetOwnership(
            project_id=widget.project_id, builder_id=widget.builder_id, end_user_id=widget.user_id
        )

    async def live_quota(self, widget_id: UUID) -> MonthQuota | None:
        """This month's quota counter of the widget's owner and project, for the analytics
        domain: live from ``widget_usage``, not from the warehouse (None: no such widget)."""
        async with sessionmaker()() as db:
            widget = await widget_repository.get(db, widget_id)
            if widget is None:
                return None
            month = this_month()
            limit = await self.quota_limit(db, widget)
            used = await usage_repository.used(db, widget.user_id, widget.project_id, month)
        return MonthQuota(month=month, limit=limit, used=used)

    async def customers(
        self,
        db: AsyncSession,
        actor: Principal,
        widget_id: UUID,
        start: date,
        end: date,
        params: PageParams,
    ) -> tuple[list[CustomerUsage], int]:
        """Usage per verified customer from ``start`` to ``end`` (UTC days, inclusive), from the
        stored messages of the widget's conversations: its owner or an administrator (404)."""
        widget = await self.get_visible(db, actor, widget_id)
        return await chat_service.widget_customers(
            db,
            widget.id,
            datetime(start.year, start.month, start.day, tzinfo=UTC),
            datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1),
            params,
        )

    # --- standing and quota -----------------------------------------------------------------

    async def standing(self, db: AsyncSession, widget: Widget) -> Standing:
        if widget.kind == WidgetKind.PREVIEW:
            project = await self._project(db, widget)
            if project is None:
                return Standing(False, "project_deleted", None)
            return Standing(True, None, project)
        return await self._live_standing(db, widget.builder_id, widget.user_id, widget.project_id)

    async def _live_standing(
        self, db: AsyncSession, builder_id: UUID, owner_id: UUID, project_id: UUID
    ) -> Standing:
        try:
            project = await project_service.get_visible(db, _acting_as(builder_id, "builder"), project_id)
        except NotFound:
            return Standing(False, "project_deleted", None)
        try:
            listing = await marketplace_service.detail(db, _acting_as(builder_id, "builder"), project_id)
        except NotFound:
            return Standing(False, "listing_delisted", project)
        # Only a listing on sale (or held: what was bought keeps working) serves. A delisted one
        # republished by its builder waits in review: moderation decides before visitors see it.
        if listing.status == ListingStatus.PENDING_REVIEW:
            return Standing(False, "listing_under_review", project)
        if listing.status not in (ListingStatus.ACTIVE, ListingStatus.HELD):
            return Standing(False, "listing_delisted", project)
        if await self._completed_purchase(db, owner_id, project_id) is None:
            return Standing(False, "purchase_refunded", project)
        return Standing(True, None, project)

    @staticmethod
    async def _project(db: AsyncSession, widget: Widget) -> Project | None:
        try:
            return await project_service.get_visible(
                db, _acting_as(widget.builder_id, "builder"), widget.project_id
            )
        except NotFound:
            return None

    async def quota_limit(self, db: AsyncSession, widget: Widget) -> int | None:
        """Messages a month from the owner's plan (the builder's own, for a preview); None: no cap."""
        owner = await user_service.get(db, widget.user_id)
        limits = await user_service.plan_limits(db, owner.plan) if owner else {}
        limit = limits.get(QUOTA_LIMIT_KEY)
        return limit if isinstance(limit, int) else None

    async def quota(self, db: AsyncSession, widget: Widget) -> Quota:
        limit = await self.quota_limit(db, widget)
        used = await usage_repository.used(db, widget.user_id, widget.project_id, this_month())
        return Quota(limit=limit, used=used, remaining=None if limit is None else max(0, limit - used))

    async def count_message(self, db: AsyncSession, widget: Widget) -> None:
        """Count one visitor message against the month's quota of the widget's owner for its
        project (all their widgets of the project share it): 429 ``quota_exceeded`` when it is
        used up (nothing is counted then: the request rolls back)."""
        month = this_month()
        limit = await self.quota_limit(db, widget)
        used = await usage_repository.count_message(db, widget.user_id, widget.project_id, month)
        if limit is None:
            return
        if used > limit:
            resets_at = _next_month(month)
            raise TooManyRequests(
                "This assistant has answered all the messages it can this month. Please come back "
                "later or contact the site's owner.",
                code="quota_exceeded",
                retry_after=int((resets_at - datetime.now(UTC)).total_seconds()),
                details={"limit": limit, "used": limit, "resetsAt": resets_at.isoformat()},
            )
        payload = {**self._payload(widget), "month": month.strftime("%Y-%m"), "limit": limit, "used": used}
        if used * 100 >= limit * WARNING_PERCENT and await usage_repository.mark(
            db, widget.user_id, widget.project_id, month, "warned_at"
        ):
            await record_event(
                db,
                "widget.quota_warning",
                actor_id=None,
                subject_id=widget.id,
                payload={**payload, "percent": 80},
            )
        if used >= limit and await usage_repository.mark(
            db, widget.user_id, widget.project_id, month, "reached_at"
        ):
            await record_event(
                db,
                "widget.quota_reached",
                actor_id=None,
                subject_id=widget.id,
                payload={**payload, "percent": 100},
            )

    # --- runtime ----------------------------------------------------------------------------

    async def by_key(self, db: AsyncSession, public_key: str) -> Widget:
        widget = await widget_repository.by_public_key(db, public_key)
        if widget is None:
            raise NotFound("No widget has this key", code="widget_not_found")
        return widget

    async def get(self, db: AsyncSession, widget_id: UUID) -> Widget:
        widget = await widget_repository.get(db, widget_id)
        if widget is None:
            raise NotFound("Widget not found", code="widget_not_found")
        return widget

    @staticmethod
    def browser_origin(header: str | None) -> str:
        """The request's ``Origin`` in canonical form; 403 when absent or not an origin."""
        if header is None or not header.strip():
            raise Forbidden(
                "The widget only runs in a browser page (no Origin header)", code="origin_required"
            )
        try:
            return normalise_origin(header)
        except InvalidOrigin as exc:
            raise Forbidden("This site may not use the widget", code="origin_not_allowed") from exc

    @staticmethod
    def check_origin(widget: Widget, origin: str) -> None:
        if not origin_allowed(origin, behaviour_of(widget).allowed_origins):
            raise Forbidden(
                "This site may not use the widget", code="origin_not_allowed", details={"origin": origin}
            )

    async def open_session(
        self,
        db: AsyncSession,
        rt: Runtime,
        widget: Widget,
        origin: str,
        body: SessionRequest,
        *,
        client_ip: str,
    ) -> SessionOut:
        """A visitor's session on an allowed origin (checked by the caller). The visitor id is
        the client's to choose, so it alone cannot bound anything: the client's IP is limited
        too, all widgets together."""
        visitor_id = body.visitor_id or "v_" + secrets.token_urlsafe(16)
        await rt.rate_limiter.hit(
            rt.settings.widget_session_rate_limit_ip,
            "widget-session-ip",
            client_ip,
            message="Too many new chat sessions from your network; wait a moment",
        )
        await rt.rate_limiter.hit(
            rt.settings.widget_session_rate_limit,
            "widget-session",
            str(widget.id),
            visitor_id,
            message="Too many new chat sessions; wait a moment",
        )
        standing = await self.standing(db, widget)
        if not standing.serving:
            raise WidgetUnavailable(
                "This chat is no longer available on this site", details={"reason": standing.reason}
            )
        customer_id = self._verified_customer(rt.settings, widget, body, now=int(time.time()))
        token, claims = issue_session_token(
            rt.jwt_secret,
            rt.settings.widget_session_ttl_seconds,
            widget_id=widget.id,
            visitor_id=visitor_id,
            customer_id=customer_id,
            origin=origin,
        )
        return SessionOut(
            token=token,
            expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
            expires_in=rt.settings.widget_session_ttl_seconds,
            widget_id=widget.id,
            visitor_id=visitor_id,
            appearance=appearance_of(widget),
            quota=await self.quota(db, widget),
        )

    def _verified_customer(
        self, settings: Settings, widget: Widget, body: SessionRequest, *, now: int
    ) -> str | None:
        """The host site's user id when its signature checks out and has not expired. With
        identity verification on, anything else is refused: 403 ``identity_invalid`` (missing,
        wrong, or an expiry more than 24 hours ahead) or ``identity_expired``; off, the visitor
        simply stays anonymous."""
        required = behaviour_of(widget).identity_verification
        identity = body.identity
        if identity is None:
            if required:
                raise Forbidden(
                    "This widget needs a signed identity: {userId, exp, signature = "
                    'HMAC-SHA256(secretKey, "widgetId|userId|exp")}',
                    code="identity_invalid",
                )
            return None
        try:
            verify_identity(
                self.secret_of(settings, widget),
                widget.id,
                identity.user_id,
                identity.exp,
                identity.signature,
                now=now,
            )
        except InvalidIdentity as exc:
            if not required:
                return None
            if exc.code == "identity_expired":
                raise Forbidden(
                    "The identity signature has expired: sign it again with a later exp",
                    code="identity_expired",
                    details={"exp": identity.exp},
                ) from None
            raise Forbidden(
                'The identity signature does not match HMAC-SHA256(secretKey, "widgetId|userId|exp"), '
                "or its exp is more than 24 hours ahead",
                code="identity_invalid",
            ) from None
        return identity.user_id

    @staticmethod
    def read_token(jwt_secret: str, token: str) -> SessionClaims:
        """Signature and type checked, expiry NOT checked (see :meth:`require_fresh`)."""
        try:
            return read_session_token(jwt_secret, token, verify_expiry=False)
        except InvalidSession as exc:
            raise _unauthorized(exc.code) from exc

    @staticmethod
    def require_fresh(claims: SessionClaims) -> None:
        if claims.expires_at <= int(time.time()):
            raise _unauthorized("session_expired")

    @staticmethod
    def check_session_origin(widget: Widget, claims: SessionClaims, origin: str) -> None:
        """The page asking is the one the session was opened on, and still an allowed one."""
        if claims.origin != origin:
            raise Forbidden("This session belongs to another site", code="origin_not_allowed")
        WidgetService.check_origin(widget, origin)

    async def prepare_chat(
        self,
        db: AsyncSession,
        rt: Runtime,
        widget: Widget,
        claims: SessionClaims,
        text: str,
        conversation_id: UUID | None,
        *,
        client_ip: str,
    ) -> PreparedTurn:
        """Rate limits (per client IP, per visitor, then the widget's ceiling, so a refused
        flood does not use up the widget's), quota, then the chat service stores the question
        (committed with the quota count by the request)."""
        limits = behaviour_of(widget).rate_limits
        await rt.rate_limiter.hit(
            rt.settings.widget_message_rate_limit_ip,
            "widget-message-ip",
            client_ip,
            message="Too many messages from your network; wait a moment",
        )
        await rt.rate_limiter.hit(
            f"{limits.messages_per_minute_per_visitor}/minute",
            "widget-message",
            str(widget.id),
            claims.visitor_id,
            message="You are sending messages too quickly; wait a moment",
        )
        await rt.rate_limiter.hit(
            rt.settings.widget_message_rate_limit,
            "widget-message-all",
            str(widget.id),
            message="This assistant is very busy right now; try again in a moment",
        )
        # Checked at every message, not only when the session opened: a refund or a delisting
        # stops open sessions at once (the cached configuration is dropped as it commits).
        config = await self.runtime_config(rt, widget.id)
        if config.unavailable is not None:
            raise WidgetUnavailable(
                "This chat is no longer available on this site", details={"reason": config.unavailable}
            )
        project = await self._project(db, widget)
        if project is None:
            raise WidgetUnavailable("This chat is no longer available", details={"reason": "project_deleted"})
        await self.count_message(db, widget)
        return await chat_service.prepare_turn(
            db,
            rt.settings,
            ChatProject(
                id=project.id, prompt=project.prompt, llm=project.llm, mcp_servers=project.mcp_servers
            ),
            Asker(
                channel=ChatChannel.WIDGET,
                widget_id=widget.id,
                visitor_id=claims.visitor_id,
                customer_id=claims.customer_id,
            ),
            text,
            conversation_id=conversation_id,
        )

    async def runtime_config(self, rt: Runtime, widget_id: UUID) -> WidgetRuntime:
        """The widget's origins, beacon limit, ids and standing (404 ``widget_not_found``): from
        the cache (this process's memory, then Redis), the database on a miss. A configuration
        change, and an event that may change the standing (``_STANDING_EVENTS``), reach every
        process when they commit; a missed one lasts at most ``RUNTIME_CONFIG_TTL_SECONDS``."""
        key = runtime_config_key(widget_id)
        cached = await rt.cache.get(key)
        if cached:
            return self._decoded_runtime(cached)
        async with sessionmaker()() as db:
            widget = await widget_repository.get(db, widget_id)
            if widget is None:
                raise NotFound("Widget not found", code="widget_not_found")
            standing = await self.standing(db, widget)
        behaviour = behaviour_of(widget)
        value = orjson.dumps(
            {
                "widgetId": str(widget.id),
                "projectId": str(widget.project_id),
                "ownerId": str(widget.user_id),
                "allowedOrigins": behaviour.allowed_origins,
                "beaconsPerMinutePerVisitor": behaviour.rate_limits.beacons_per_minute_per_visitor,
                "unavailable": standing.reason,
            }
        )
        if cached is None:
            # NX, and not at all on b"" (a change committed moments ago): never over a fresher
            # invalidation.
            await rt.cache.set(key, value, RUNTIME_CONFIG_TTL_SECONDS, only_if_absent=True)
        return self._decoded_runtime(value)

    def _decoded_runtime(self, value: bytes) -> WidgetRuntime:
        # The first-level cache hands back the same bytes on every hit: decoded once per process.
        decoded = self._runtimes.get(value)
        if decoded is None:
            data = orjson.loads(value)
            decoded = WidgetRuntime(
                widget_id=UUID(data["widgetId"]),
                allowed_origins=tuple(data["allowedOrigins"]),
                beacons_per_minute_per_visitor=int(data["beaconsPerMinutePerVisitor"]),
                ids={
                    "widget_id": data["widgetId"],
                    "project_id": data["projectId"],
                    "end_user_id": data["ownerId"],
                },
                unavailable=data.get("unavailable"),
            )
            if len(self._runtimes) >= _MAX_REMEMBERED:
                self._runtimes.clear()
            self._runtimes[value] = decoded
        return decoded

    def session_claims(self, rt: Runtime, token: str) -> SessionClaims:
        """:meth:`read_token`, remembered per token (expiry still NOT checked)."""
        if self._sessions_secret != rt.jwt_secret:
            self._sessions, self._sessions_secret = {}, rt.jwt_secret
        claims = self._sessions.get(token)
        if claims is None:
            claims = self.read_token(rt.jwt_secret, token)
            if len(self._sessions) >= _MAX_REMEMBERED:
                self._sessions.clear()
            self._sessions[token] = claims
        return claims

    @staticmethod
    def check_beacon_origin(config: WidgetRuntime, claims: SessionClaims, origin: str) -> None:
        """:meth:`check_session_origin` against the cached configuration."""
        if claims.origin != origin:
            raise Forbidden("This session belongs to another site", code="origin_not_allowed")
        if not origin_allowed(origin, config.allowed_origins):
            raise Forbidden(
                "This site may not use the widget", code="origin_not_allowed", details={"origin": origin}
            )

    async def accept_beacons(
        self, rt: Runtime, config: WidgetRuntime, claims: SessionClaims, events: list[BeaconEvent]
    ) -> int:
        """Rate limits (per widget, per visitor: 429 and nothing published when one is used up),
        then the beacons into the usage stream in the same Redis round trip; without Redis,
        outbox rows committed before this returns."""
        settings = rt.settings
        common = {
            **config.ids,
            "visitor_id": claims.visitor_id,
            "session_id": claims.session_id,
            "customer_id": claims.customer_id,
        }
        gate = beacon_gate(settings.redis_url, settings.redis_prefix + settings.usage_stream)
        if gate is None:
            return await self._beacons_to_outbox(rt, config, claims, common, events)
        widget_rules = parse_rules(settings.widget_beacon_rate_limit)
        per_visitor = config.beacons_per_minute_per_visitor
        prefix = f"{settings.redis_prefix}limits:widget-beacons:{config.widget_id}"
        rules = [
            *(Rule(f"{prefix}:{amount}/{window}", amount, window) for amount, window in widget_rules),
            Rule(f"{prefix}:{claims.visitor_id}:{per_visitor}/60000", per_visitor, 60_000),
        ]
        refused = await gate.publish(rules, stream_entries(common, events, datetime.now(UTC)))
        if refused is not None:
            message = _WIDGET_FLOOD if refused.rule < len(widget_rules) else _VISITOR_FLOOD
            raise TooManyRequests(message, retry_after=refused.retry_after)
        return len(events)

    @staticmethod
    async def _beacons_to_outbox(
        rt: Runtime,
        config: WidgetRuntime,
        claims: SessionClaims,
        common: dict[str, str | None],
        events: list[BeaconEvent],
    ) -> int:
        widget_id = str(config.widget_id)
        await rt.rate_limiter.hit(
            rt.settings.widget_beacon_rate_limit, "widget-beacons", widget_id, message=_WIDGET_FLOOD
        )
        await rt.rate_limiter.hit(
            f"{config.beacons_per_minute_per_visitor}/minute",
            "widget-beacons-visitor",
            widget_id,
            claims.visitor_id,
            message=_VISITOR_FLOOD,
        )
        beacons = [
            UsageBeacon.model_validate(
                {
                    **common,
                    "event_id": event.event_id,
                    "kind": event.kind,
                    "count": event.count,
                    "latency_ms": event.latency_ms,
                    "client_ts": event.client_ts,
                }
            )
            for event in events
        ]
        async with sessionmaker()() as db:
            accepted = await publish_usage(beacons, settings=rt.settings, redis=None, db=db)
            await commit(db)
        return accepted

    # --- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _payload(widget: Widget) -> dict[str, Any]:
        return {
            "widgetId": str(widget.id),
            "projectId": str(widget.project_id),
            "userId": str(widget.user_id),
            "builderId": str(widget.builder_id),
            "kind": widget.kind,
        }


def _unauthorized(code: str) -> AppError:
    message = "The chat session has expired" if code == "session_expired" else "The chat session is not valid"
    return Unauthorized(message, code=code)


widget_service = WidgetService()


# --- standing changes made by other domains -----------------------------------------------------


def _project_of(recorded: OutboxEvent) -> str | None:
    """The project a standing event is about: ``projectId`` in purchase and listing payloads,
    the subject of ``project.deleted``."""
    project = recorded.payload.get("projectId") if recorded.type != "project.deleted" else recorded.subject_id
    return project if isinstance(project, str) else None


async def _standing_changed(events: list[OutboxEvent]) -> None:
    """Refunds, moderation and project deletions belong to other domains; the events they record
    in the transaction of the change are how this one hears of them. Once that transaction
    commits, the cached runtime configuration of the project's widgets is dropped in every
    process, so the next chat message of an open session reads the new standing."""
    projects = {project for recorded in events if (project := _project_of(recorded)) is not None}
    if projects:
        await _forget_standing(projects)


on_commit_of(_STANDING_EVENTS, _standing_changed)


async def _forget_standing(project_ids: set[str]) -> None:
    """Drop the cached runtime configuration of every widget of these projects. Never raises:
    the change is committed already, and the cache's TTL bounds a missed invalidation."""
    try:
        async with sessionmaker()() as db:
            widget_ids = await widget_repository.ids_of_projects(db, [UUID(p) for p in project_ids])
        await runtime().cache.invalidate(*(runtime_config_key(widget_id) for widget_id in widget_ids))
    except Exception:
        logger.warning("cached standing of the widgets of %s not dropped", sorted(project_ids), exc_info=True)
