"""The marketplace: publishing and moderating listings, browsing, buying and refunding.

A purchase is ``pending`` until its payment succeeds; then, in one transaction, it is
``completed``, the sale is split and posted to the ledger, and a paid invoice is issued.
"""

import hashlib
import logging
import math
from datetime import UTC, datetime, time, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.analytics.schemas import ReportQuery
from app.analytics.service import analytics_service
from app.auth.permissions import Perm
from app.auth.service import ClientInfo
from app.billing.service import LineItem, billing_service
from app.core.cache import Cache
from app.core.config import Settings
from app.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from app.core.events import record_event
from app.core.pagination import PageParams, apply_sort, paginate, paginate_rows
from app.core.principal import Principal
from app.core.runtime import Runtime, runtime
from app.marketplace.repository import listing_repository, purchase_repository
from app.marketplace.schemas import (
    ListingAuditOut,
    ListingDetail,
    ListingOut,
    ListingStatusUpdate,
    MarketplaceAnalytics,
    PublishRequest,
    PurchaseOut,
    PurchaseRequest,
)
from app.marketplace.states import ADMIN_TRANSITIONS, EVENT_OF, PROJECT_STATUS
from app.models import Listing, ListingAudit, ListingStatus, Payment, ProjectStatus, Purchase, PurchaseStatus
from app.payments.service import payment_service
from app.projects.service import project_service
from app.revenue import ledger
from app.revenue.splits import Split, split_sale
from app.users.service import user_service

logger = logging.getLogger("bazaar.marketplace")

_BROWSE_SORT = {
    "publishedAt": Listing.published_at,
    "price": Listing.price_minor,
    "popularity": Listing.purchase_count,
    "title": Listing.title,
}


def listing_out(listing: Listing, builder_name: str) -> ListingOut:
    return ListingOut(
        id=listing.id,
        project_id=listing.project_id,
        builder_id=listing.builder_id,
        builder_name=builder_name,
        title=listing.title,
        description=listing.description,
        category=listing.category,
        tags=list(listing.tags),
        price_minor=listing.price_minor,
        currency=listing.currency,
        status=listing.status,
        published_at=listing.published_at,
        purchase_count=listing.purchase_count,
        created_at=listing.created_at,
        updated_at=listing.updated_at,
    )


def purchase_out(purchase: Purchase, payment: Payment | None) -> PurchaseOut:
    return PurchaseOut(
        id=purchase.id,
        user_id=purchase.user_id,
        project_id=purchase.project_id,
        listing_id=purchase.listing_id,
        amount_minor=purchase.amount_minor,
        currency=purchase.currency,
        status=purchase.status,
        provider=purchase.provider,
        payment_id=payment.id if payment else None,
        checkout_url=payment.checkout_url if payment and purchase.status == PurchaseStatus.PENDING else None,
        purchased_at=purchase.created_at,
        completed_at=purchase.completed_at,
        refunded_at=purchase.refunded_at,
    )


async def _post_for_purchase(
    db: AsyncSession,
    purchase: Purchase,
    kind: str,
    legs: list[ledger.Leg],
    *,
    actor_id: UUID,
    memo: str,
    details: dict[str, Any] | None = None,
) -> None:
    """Post a purchase's ledger transaction (one per kind and purchase), tagged for reports."""
    await ledger.post(
        db,
        kind=kind,
        reference=f"purchase:{purchase.id}",
        currency=purchase.currency,
        legs=legs,
        actor_id=actor_id,
        builder_id=purchase.builder_id,
        project_id=purchase.project_id,
        purchase_id=purchase.id,
        memo=memo,
        details=details,
    )


def _split_payload(split: Split) -> dict[str, int]:
    """The parts of a sale as events carry them; grossMinor = the other three added up."""
    return {
        "grossMinor": split.gross_minor,
        "processorFeeMinor": split.processor_fee_minor,
        "platformFeeMinor": split.platform_fee_minor,
        "builderShareMinor": split.builder_share_minor,
    }


def _client_fingerprint(client: ClientInfo) -> str:
    """An anonymous viewer: their address and user agent, hashed (the key never holds the IP)."""
    return hashlib.sha256(f"{client.ip}\n{client.user_agent or ''}".encode()).hexdigest()[:32]


class MarketplaceService:
    # --- listings -------------------------------------------------------------------------

    async def publish(
        self, db: AsyncSession, settings: Settings, actor: Principal, project_id: UUID, body: PublishRequest
    ) -> Listing:
        project = await project_service.get_visible(db, actor, project_id, for_update=True)
        if project.user_id != actor.user_id:
            raise Forbidden("Only the project's owner publishes it", code="not_owner")
        if project.status != ProjectStatus.READY:
            raise Conflict(
                f"Only a ready project can be published (this one is {project.status})",
                code="project_not_ready",
                details={"status": project.status},
            )
        if body.price_minor > 0 and settings.payment_provider != "local":
            account = await payment_service.payout_account(db, actor.user_id)
            if (
                account is None
                or account.provider != settings.payment_provider
                or not account.payouts_enabled
            ):
                raise Conflict(
                    "Paid listings need a payout account: finish onboarding first",
                    code="payout_account_required",
                )
        target = ListingStatus.PENDING_REVIEW if settings.listing_review_required else ListingStatus.ACTIVE
        listing = await listing_repository.by_project(db, project.id, for_update=True)
        previous: str | None = None
        if listing is None:
            listing = Listing(project_id=project.id, builder_id=project.user_id, purchase_count=0)
            db.add(listing)
        elif listing.status in (ListingStatus.ACTIVE, ListingStatus.HELD, ListingStatus.PENDING_REVIEW):
            raise Conflict("This project is already listed", code="already_listed")
        else:
            previous = listing.status
        listing.title = body.title or project.name
        listing.description = body.description
        listing.category = body.category
        listing.tags = body.tags
        listing.price_minor = body.price_minor
        listing.currency = body.currency
        listing.status = target
        listing.published_at = datetime.now(UTC) if target == ListingStatus.ACTIVE else None
        await db.flush()
        await self._audit(db, listing, actor.user_id, previous, target, None)
        await self._sync_project(db, actor.user_id, listing)
        await record_event(
            db,
            "listing.published",
            actor_id=actor.user_id,
            subject_id=listing.id,
            payload=self._payload(listing),
        )
        return listing

    async def set_status(
        self, db: AsyncSession, actor: Principal, some_id: UUID, body: ListingStatusUpdate
    ) -> Listing:
        if not actor.can(Perm.PLATFORM_ADMIN):
            raise Forbidden("Only administrators moderate listings", code="permission_denied")
        listing = await listing_repository.by_project_or_id(db, some_id, for_update=True)
        if listing is None:
            raise NotFound("Listing not found", code="listing_not_found")
        current, target = ListingStatus(listing.status), ListingStatus(body.status)
        if target not in ADMIN_TRANSITIONS[current]:
            raise Conflict(
                f"A {current} listing cannot become {target}",
                code="invalid_status_transition",
                details={"from": current.value, "to": target.value},
            )
        if target == ListingStatus.ACTIVE:
            # A listing waiting for review leaves its project `ready`, so its builder may have
            # deleted the project meanwhile: a deleted project never goes on the marketplace.
            await project_service.get_visible(db, actor, listing.project_id)
        listing.status = target
        if target == ListingStatus.ACTIVE and listing.published_at is None:
            listing.published_at = datetime.now(UTC)
        listing.updated_at = datetime.now(UTC)
        await self._audit(db, listing, actor.user_id, current, target, body.reason)
        await self._sync_project(db, actor.user_id, listing)
        await record_event(
            db,
            EVENT_OF[target],
            actor_id=actor.user_id,
            subject_id=listing.id,
            payload={**self._payload(listing), "from": current.value, "reason": body.reason},
        )
        await db.flush()
        return listing

    async def browse(
        self, db: AsyncSession, params: PageParams, **filters: Any
    ) -> tuple[list[ListingOut], int]:
        stmt = listing_repository.browse(**filters)
        if filters.get("q") and not params.sort:
            stmt = listing_repository.best_matches_first(stmt, filters["q"])
        else:
            stmt = apply_sort(stmt, params.sort, _BROWSE_SORT, default="-publishedAt", tiebreak=Listing.id)
        total_rows, total = await paginate_rows(db, stmt, params)
        return [listing_out(listing, name) for listing, name in total_rows], total

    async def detail(self, db: AsyncSession, actor: Principal | None, some_id: UUID) -> ListingDetail:
        listing = await listing_repository.by_project_or_id(db, some_id)
        if listing is None:
            raise NotFound("Listing not found", code="listing_not_found")
        # The owner and admins also see a listing that is not on sale, and its moderation trail.
        privileged = actor is not None and (
            actor.user_id == listing.builder_id or actor.can(Perm.PLATFORM_ADMIN)
        )
        if listing.status != ListingStatus.ACTIVE and not privileged:
            raise NotFound("Listing not found", code="listing_not_found")
        name = await listing_repository.builder_name(db, listing.builder_id)
        audit = await listing_repository.audit(db, listing.id) if privileged else []
        return ListingDetail(
            **listing_out(listing, name).model_dump(),
            audit=[ListingAuditOut.model_validate(a) for a in audit],
        )

    async def record_view(
        self,
        db: AsyncSession,
        cache: Cache,
        viewer: Principal | None,
        client: ClientInfo,
        listing: ListingOut,
    ) -> bool:
        """Count a view of an active listing, at most once per viewer, listing and UTC day, as a
        ``listing.viewed`` event in the request's transaction. Returns whether it was counted.

        The viewer is the signed-in user, else a hash of the client's address and user agent.
        The owner and administrators are not counted. A view is analytics: when the
        deduplication store (Redis) fails the view is dropped and logged, never the page; the
        day's key is set before the request commits, so a request that fails to commit loses
        that viewer's view for the day (never counts it twice)."""
        if listing.status != ListingStatus.ACTIVE:
            return False
        if viewer is not None and (viewer.user_id == listing.builder_id or viewer.can(Perm.PLATFORM_ADMIN)):
            return False
        now = datetime.now(UTC)
        day = now.date()
        who = f"user:{viewer.user_id}" if viewer is not None else f"client:{_client_fingerprint(client)}"
        # The key names the day, so it only has to live until the day ends.
        seconds_left = (datetime.combine(day + timedelta(days=1), time.min, UTC) - now).total_seconds()
        try:
            # An empty value: nothing is read back, and with Redis no in-process copy is kept.
            first = await cache.set(
                f"listing-view:{day.isoformat()}:{listing.id}:{who}",
                b"",
                math.ceil(seconds_left),
                only_if_absent=True,
            )
        except Exception:
            logger.warning("listing view not counted: deduplication store unavailable", exc_info=True)
            return False
        if not first:
            return False
        await record_event(
            db,
            "listing.viewed",
            actor_id=viewer.user_id if viewer is not None else None,
            subject_id=listing.id,
            payload={
                "listingId": str(listing.id),
                "projectId": str(listing.project_id),
                "builderId": str(listing.builder_id),
                "viewerId": str(viewer.user_id) if viewer is not None else None,
                "anonymous": viewer is None,
                "day": day.isoformat(),
            },
        )
        return True

    # --- purchases ------------------------------------------------------------------------

    async def purchase(
        self,
        db: AsyncSession,
        settings: Settings,
        actor: Principal,
        body: PurchaseRequest,
        idempotency_key: str,
    ) -> tuple[Purchase, bool]:
        """Buy a listing. Returns the purchase and whether this call created it (a retry with
        the same ``Idempotency-Key`` gets the same purchase back)."""
        if (body.project_id is None) == (body.listing_id is None):
            raise ValidationFailed("Give exactly one of projectId or listingId", code="purchase_target")
        target_id = body.project_id or body.listing_id
        assert target_id is not None
        earlier = await purchase_repository.by_idempotency_key(db, actor.user_id, idempotency_key)
        if earlier is not None:
            return self._same_request(earlier, target_id), False
        listing = await listing_repository.by_project_or_id(db, target_id)
        if listing is None or listing.status in (ListingStatus.PENDING_REVIEW, ListingStatus.DELISTED):
            raise NotFound("Listing not found", code="listing_not_found")
        if listing.status == ListingStatus.HELD:
            raise Conflict("This listing is on hold and cannot be bought", code="listing_held")
        if listing.builder_id == actor.user_id:
            raise Forbidden("You cannot buy your own project", code="cannot_buy_own")
        builder = await user_service.get(db, listing.builder_id)
        limits = await user_service.plan_limits(db, builder.plan) if builder else {}
        fee_bps = limits.get("platformFeeBps")
        purchase_id = await purchase_repository.insert_unless_exists(
            db,
            {
                "user_id": actor.user_id,
                "listing_id": listing.id,
                "project_id": listing.project_id,
                "builder_id": listing.builder_id,
                "amount_minor": listing.price_minor,
                "currency": listing.currency,
                "status": PurchaseStatus.PENDING,
                "provider": settings.payment_provider if listing.price_minor > 0 else "local",
                "idempotency_key": idempotency_key,
                "platform_fee_bps": fee_bps if isinstance(fee_bps, int) else settings.platform_fee_bps,
            },
        )
        if purchase_id is None:
            return await self._existing(db, actor, listing, idempotency_key, target_id), False
        purchase = await purchase_repository.get(db, purchase_id)
        assert purchase is not None
        await record_event(
            db,
            "purchase.created",
            actor_id=actor.user_id,
            subject_id=purchase.id,
            payload=self._purchase_payload(purchase),
        )
        buyer = await user_service.get(db, actor.user_id)
        await payment_service.start(
            db,
            settings,
            user_id=actor.user_id,
            amount_minor=purchase.amount_minor,
            currency=purchase.currency,
            description=listing.title,
            customer_email=buyer.email if buyer else "",
            purchase_id=purchase.id,
            metadata={"purchase_id": str(purchase.id), "listing_id": str(listing.id)},
        )
        await db.refresh(purchase)
        return purchase, True

    async def _existing(
        self, db: AsyncSession, actor: Principal, listing: Listing, key: str, target_id: UUID
    ) -> Purchase:
        same_key = await purchase_repository.by_idempotency_key(db, actor.user_id, key)
        if same_key is not None:
            return self._same_request(same_key, target_id)
        live = await purchase_repository.live_for_listing(db, actor.user_id, listing.id)
        if live is not None:
            raise Conflict(
                "You already bought this project"
                if live.status == PurchaseStatus.COMPLETED
                else "A purchase of this project is already in progress",
                code="already_purchased",
                details={"purchaseId": str(live.id), "status": live.status},
            )
        raise Conflict("The purchase could not be recorded; retry", code="purchase_conflict")

    @staticmethod
    def _same_request(purchase: Purchase, target_id: UUID) -> Purchase:
        if target_id not in (purchase.project_id, purchase.listing_id):
            raise Conflict(
                "This Idempotency-Key was used for another purchase", code="idempotency_key_reused"
            )
        return purchase

    async def settle_purchase(self, db: AsyncSession, payment: Payment) -> None:
        """Payment callback: complete the purchase, post the split, issue the paid invoice."""
        assert payment.purchase_id is not None
        purchase = await purchase_repository.get(db, payment.purchase_id, for_update=True)
        if purchase is None or purchase.status != PurchaseStatus.PENDING:
            return
        split = split_sale(purchase.amount_minor, payment.processor_fee_minor or 0, purchase.platform_fee_bps)
        now = datetime.now(UTC)
        purchase.status = PurchaseStatus.COMPLETED
        purchase.completed_at = now
        await _post_for_purchase(
            db,
            purchase,
            "settlement",
            ledger.sale_legs(split, purchase.builder_id),
            actor_id=purchase.user_id,
            memo="Marketplace sale",
            details={"paymentId": str(payment.id), "platformFeeBps": purchase.platform_fee_bps},
        )
        await listing_repository.add_purchase_count(db, purchase.listing_id, 1)
        listing = await listing_repository.by_project_or_id(db, purchase.listing_id)
        invoice = await billing_service.issue(
            db,
            runtime().settings,
            user_id=purchase.user_id,
            kind="purchase",
            reference=str(purchase.id),
            currency=purchase.currency,
            lines=[
                LineItem(
                    f"{listing.title if listing else 'Chat app'} (marketplace purchase)",
                    purchase.amount_minor,
                )
            ],
            actor_id=purchase.user_id,
            tax_included=True,
        )
        await billing_service.mark_paid(db, invoice.id, actor_id=purchase.user_id)
        await record_event(
            db,
            "purchase.completed",
            actor_id=purchase.user_id,
            subject_id=purchase.id,
            payload={
                **self._purchase_payload(purchase),
                "paymentId": str(payment.id),
                **_split_payload(split),
                "platformFeeBps": purchase.platform_fee_bps,
                "invoiceId": str(invoice.id),
            },
        )
        await db.flush()

    async def fail_purchase(self, db: AsyncSession, payment: Payment) -> None:
        assert payment.purchase_id is not None
        purchase = await purchase_repository.get(db, payment.purchase_id, for_update=True)
        if purchase is None or purchase.status != PurchaseStatus.PENDING:
            return
        purchase.status = PurchaseStatus.FAILED
        await record_event(
            db,
            "purchase.failed",
            actor_id=purchase.user_id,
            subject_id=purchase.id,
            payload={**self._purchase_payload(purchase), "reason": payment.failure_reason},
        )
        await db.flush()

    async def refund(
        self, db: AsyncSession, settings: Settings, actor: Principal, purchase_id: UUID, reason: str
    ) -> Purchase:
        if not actor.can(Perm.PLATFORM_ADMIN):
            raise Forbidden("Only administrators refund purchases", code="permission_denied")
        purchase = await purchase_repository.get(db, purchase_id, for_update=True)
        if purchase is None:
            raise NotFound("Purchase not found", code="purchase_not_found")
        if purchase.status != PurchaseStatus.COMPLETED:
            raise Conflict(f"A {purchase.status} purchase cannot be refunded", code="not_refundable")
        payment = await payment_service.for_purchase(db, purchase.id)
        assert payment is not None
        split = split_sale(purchase.amount_minor, payment.processor_fee_minor or 0, purchase.platform_fee_bps)
        await payment_service.refund(db, settings, payment, actor_id=actor.user_id)
        await _post_for_purchase(
            db,
            purchase,
            "refund",
            ledger.refund_legs(split, purchase.builder_id),
            actor_id=actor.user_id,
            memo=f"Refund: {reason}",
        )
        await billing_service.credit(
            db, kind="purchase", reference=str(purchase.id), reason=reason, actor_id=actor.user_id
        )
        purchase.status = PurchaseStatus.REFUNDED
        purchase.refunded_at = datetime.now(UTC)
        await listing_repository.add_purchase_count(db, purchase.listing_id, -1)
        await record_event(
            db,
            "purchase.refunded",
            actor_id=actor.user_id,
            subject_id=purchase.id,
            payload={
                **self._purchase_payload(purchase),
                "reason": reason,
                **_split_payload(split),
            },
        )
        await db.flush()
        return purchase

    async def purchases_of(
        self, db: AsyncSession, actor: Principal, user_id: UUID, params: PageParams, status: str | None
    ) -> tuple[list[PurchaseOut], int]:
        if not actor.is_self_or(user_id, Perm.USERS_READ_ANY):
            raise NotFound("User not found", code="user_not_found")
        stmt = purchase_repository.of_user(user_id, status)
        stmt = apply_sort(
            stmt, params.sort, {"createdAt": Purchase.created_at}, default="-createdAt", tiebreak=Purchase.id
        )
        purchases, total = await paginate(db, stmt, params)
        payments = await payment_service.latest_for_purchases(db, [p.id for p in purchases])
        return [purchase_out(p, payments.get(p.id)) for p in purchases], total

    async def purchase_view(self, db: AsyncSession, purchase: Purchase) -> PurchaseOut:
        return purchase_out(purchase, await payment_service.for_purchase(db, purchase.id))

    # --- analytics ------------------------------------------------------------------------

    async def analytics(
        self, rt: Runtime, db: AsyncSession, actor: Principal, q: ReportQuery, *, builder_id: UUID | None
    ) -> MarketplaceAnalytics:
        """Admins: the whole platform (or one builder); builders: their own listings only. The
        numbers come from the published warehouse marts (``app.analytics``)."""
        if not actor.can(Perm.PLATFORM_ADMIN):
            if not actor.can(Perm.MARKETPLACE_PUBLISH):
                raise Forbidden(
                    "Marketplace analytics are for builders and administrators", code="permission_denied"
                )
            if builder_id is not None and builder_id != actor.user_id:
                raise NotFound("User not found", code="user_not_found")
            builder_id = actor.user_id
        report = await analytics_service.marketplace(rt, db, q, builder_id=builder_id)
        return MarketplaceAnalytics(
            scope="platform" if builder_id is None else "builder",
            builder_id=builder_id,
            **report.model_dump(exclude={"scope", "builder_id"}),
        )

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    async def _audit(
        db: AsyncSession, listing: Listing, actor_id: UUID, before: str | None, after: str, reason: str | None
    ) -> None:
        db.add(
            ListingAudit(
                listing_id=listing.id, actor_id=actor_id, from_status=before, to_status=after, reason=reason
            )
        )

    @staticmethod
    async def _sync_project(db: AsyncSession, actor_id: UUID, listing: Listing) -> None:
        wanted = PROJECT_STATUS[ListingStatus(listing.status)]
        await project_service.sync_marketplace_status(db, actor_id, listing.project_id, wanted)

    @staticmethod
    def _payload(listing: Listing) -> dict[str, Any]:
        return {
            "listingId": str(listing.id),
            "projectId": str(listing.project_id),
            "builderId": str(listing.builder_id),
            "status": listing.status,
            "priceMinor": listing.price_minor,
            "currency": listing.currency,
            "category": listing.category,
        }

    @staticmethod
    def _purchase_payload(purchase: Purchase) -> dict[str, Any]:
        return {
            "purchaseId": str(purchase.id),
            "listingId": str(purchase.listing_id),
            "projectId": str(purchase.project_id),
            "builderId": str(purchase.builder_id),
            "buyerId": str(purchase.user_id),
            "amountMinor": purchase.amount_minor,
            "currency": purchase.currency,
            "provider": purchase.provider,
            "status": purchase.status,
        }


marketplace_service = MarketplaceService()
payment_service.on_succeeded["purchase"] = marketplace_service.settle_purchase
payment_service.on_failed["purchase"] = marketplace_service.fail_purchase
