from typing import Any
from uuid import UUID

from sqlalchemy import Select, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Invoice, InvoiceCounter, InvoiceLine, InvoiceStatus


class InvoiceRepository:
    async def next_number(self, db: AsyncSession, series: str) -> int:
        """The next number of ``series``. The counter row stays locked until the transaction
        ends, so concurrent issues queue and a rolled-back issue leaves no gap."""
        await db.execute(insert(InvoiceCounter).values(series=series, last_number=0).on_conflict_do_nothing())
        counter = (
            await db.execute(select(InvoiceCounter).where(InvoiceCounter.series == series).with_for_update())
        ).scalar_one()
        counter.last_number += 1
        await db.flush()
        return counter.last_number

    async def get(self, db: AsyncSession, invoice_id: UUID, *, for_update: bool = False) -> Invoice | None:
        stmt = select(Invoice).where(Invoice.id == invoice_id)
        if for_update:
            stmt = stmt.with_for_update()
        return (await db.execute(stmt)).scalar_one_or_none()

    async def by_reference(self, db: AsyncSession, kind: str, reference: str) -> Invoice | None:
        stmt = select(Invoice).where(Invoice.kind == kind, Invoice.reference == reference)
        return (await db.execute(stmt.limit(1))).scalar_one_or_none()

    async def lines(self, db: AsyncSession, invoice_ids: list[UUID]) -> dict[UUID, list[InvoiceLine]]:
        result: dict[UUID, list[InvoiceLine]] = {i: [] for i in invoice_ids}
        if invoice_ids:
            stmt = (
                select(InvoiceLine)
                .where(InvoiceLine.invoice_id.in_(invoice_ids))
                .order_by(InvoiceLine.position)
            )
            for line in (await db.execute(stmt)).scalars():
                result[line.invoice_id].append(line)
        return result

    async def open_invoice(
        self, db: AsyncSession, user_id: UUID, kind: str, reference: str
    ) -> Invoice | None:
        """The newest open invoice of ``kind`` for ``reference`` (a plan awaiting payment), locked."""
        stmt = (
            select(Invoice)
            .where(
                Invoice.user_id == user_id,
                Invoice.kind == kind,
                Invoice.reference == reference,
                Invoice.status == InvoiceStatus.OPEN,
            )
            .order_by(Invoice.created_at.desc())
            .limit(1)
            .with_for_update()
        )
        return (await db.execute(stmt)).scalar_one_or_none()

    def search(self, *, user_id: UUID | None, status: str | None, kind: str | None) -> Select[Any]:
        stmt = select(Invoice)
        if user_id is not None:
            stmt = stmt.where(Invoice.user_id == user_id)
        if status:
            stmt = stmt.where(Invoice.status == status)
        if kind:
            stmt = stmt.where(Invoice.kind == kind)
        return stmt


invoice_repository = InvoiceRepository()
