from typing import Any
from uuid import UUID

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Listing, ListingAudit, ListingStatus, Purchase, User


class ListingRepository:
    async def by_project(
        self, db: AsyncSession, project_id: UUID, *, for_update: bool = False
    ) -> Listing | None:
        stmt = select(Listing).where(Listing.project_id == project_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def by_project_or_id(
        self, db: AsyncSession, some_id: UUID, *, for_update: bool = False
    ) -> Listing | None:
        stmt = select(Listing).where(or_(Listing.project_id == some_id, Listing.id == some_id))
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt.limit(1))).scalar_one_or_none()

    async def builder_name(self, db: AsyncSession, builder_id: UUID) -> str:
        return str(
            (await db.execute(select(User.name).where(User.id == builder_id))).scalar_one_or_none() or ""
        )

    def browse(
        self,
        *,
        q: str | None,
        category: str | None,
        tag: str | None,
        min_price: int | None,
        max_price: int | None,
        currency: str | None,
        builder_id: UUID | None,
    ) -> "Select[Listing, str]":
        stmt = (
            select(Listing, User.name)
            .join(User, User.id == Listing.builder_id)
            .where(Listing.status == ListingStatus.ACTIVE)
        )
        if q:
            query = func.websearch_to_tsquery("english", q)
            stmt = stmt.where(or_(Listing.search.op("@@")(query), Listing.tags.contains([q.lower()])))
        if category:
            stmt = stmt.where(Listing.category == category)
        if tag:
            stmt = stmt.where(Listing.tags.contains([tag.lower()]))
        if min_price is not None:
            stmt = stmt.where(Listing.price_minor >= min_price)
        if max_price is not None:
            stmt = stmt.where(Listing.price_minor <= max_price)
        if currency:
            stmt = stmt.where(Listing.currency == currency.lower())
        if builder_id:
            stmt = stmt.where(Listing.builder_id == builder_id)
        return stmt

    def best_matches_first(self, stmt: "Select[Listing, str]", q: str) -> "Select[Listing, str]":
        """Order a search by relevance: the ``search`` vector weighs the title (A) over the
        category (B) over the description (C); ties go to the newest."""
        rank = func.ts_rank(Listing.search, func.websearch_to_tsquery("english", q))
        return stmt.order_by(rank.desc(), Listing.published_at.desc(), Listing.id.desc())

    async def audit(self, db: AsyncSession, listing_id: UUID) -> list[ListingAudit]:
        stmt = (
            select(ListingAudit)
            .where(ListingAudit.listing_id == listing_id)
            .order_by(ListingAudit.created_at)
        )
        return list((await db.execute(stmt)).scalars())

    async def add_purchase_count(self, db: AsyncSession, listing_id: UUID, delta: int) -> None:
        await db.execute(
            update(Listing)
            .where(Listing.id == listing_id)
            .values(purchase_count=Listing.purchase_count + delta)
        )


class PurchaseRepository:
    async def insert_unless_exists(self, db: AsyncSession, values: dict[str, Any]) -> UUID | None:
        """Insert a purchase; None when the idempotency key or a live purchase of the listing
        already exists (concurrent attempts wait on the unique index, then see the winner)."""
        stmt = insert(Purchase).values(**values).on_conflict_do_nothing().returning(Purchase.id)
        return (await db.execute(stmt)).scalar_one_or_none()

    async def get(self, db: AsyncSession, purchase_id: UUID, *, for_update: bool = False) -> Purchase | None:
        stmt = select(Purchase).where(Purchase.id == purchase_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def by_idempotency_key(self, db: AsyncSession, user_id: UUID, key: str) -> Purchase | None:
        stmt = select(Purchase).where(Purchase.user_id == user_id, Purchase.idempotency_key == key)
        return (await db.execute(stmt)).scalar_one_or_none()

    async def live_for_listing(self, db: AsyncSession, user_id: UUID, listing_id: UUID) -> Purchase | None:
        stmt = select(Purchase).where(
            Purchase.user_id == user_id,
            Purchase.listing_id == listing_id,
            Purchase.status.in_(("pending", "completed")),
        )
        return (await db.execute(stmt)).scalar_one_or_none()

    def of_user(self, user_id: UUID, status: str | None) -> Select[Any]:
        stmt = select(Purchase).where(Purchase.user_id == user_id)
        if status:
            stmt = stmt.where(Purchase.status == status)
        return stmt


listing_repository = ListingRepository()
purchase_repository = PurchaseRepository()
