"""Invoices: gapless numbers, line items, tax, and their life (draft -> open -> paid | void)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.repository import invoice_repository
from app.core.config import Settings
from app.core.errors import NotFound
from app.core.events import record_event
from app.models import Invoice, InvoiceLine, InvoiceStatus
from app.users.service import user_service


@dataclass(frozen=True)
class LineItem:
    description: str
    unit_amount_minor: int
    quantity: int = 1

    @property
    def amount_minor(self) -> int:
        return self.unit_amount_minor * self.quantity


def tax_on(subtotal_minor: int, rate_bps: int) -> int:
    """Tax rounded half up to the minor unit (as tax authorities usually require)."""
    return (subtotal_minor * rate_bps + 5_000) // 10_000


class BillingService:
    async def issue(
        self,
        db: AsyncSession,
        settings: Settings,
        *,
        user_id: UUID,
        kind: str,
        reference: str | None,
        currency: str,
        lines: list[LineItem],
        actor_id: UUID | None,
        memo: str = "",
        tax_included: bool = False,
    ) -> Invoice:
        """Create an invoice and issue it (status ``open``, numbered).

        ``tax_included``: the line amounts already contain the tax (marketplace prices are
        what the buyer pays); otherwise tax is added on top."""
        user = await user_service.get(db, user_id)
        now = datetime.now(UTC)
        subtotal = sum(line.amount_minor for line in lines)
        rate = settings.invoice_tax_rate_bps
        if tax_included:
            tax = subtotal - (subtotal * 10_000 + (10_000 + rate) // 2) // (10_000 + rate)
            subtotal -= tax
        else:
            tax = tax_on(subtotal, rate)
        invoice = Invoice(
            user_id=user_id,
            status=InvoiceStatus.DRAFT,
            currency=currency,
            subtotal_minor=subtotal,
            tax_rate_bps=rate,
            tax_minor=tax,
            total_minor=subtotal + tax,
            customer_name=user.name if user else "",
            customer_email=user.email if user else "",
            kind=kind,
            reference=reference,
            memo=memo,
        )
        db.add(invoice)
        await db.flush()
        for position, line in enumerate(lines, start=1):
            db.add(
                InvoiceLine(
                    invoice_id=invoice.id,
                    position=position,
                    description=line.description,
                    quantity=line.quantity,
                    unit_amount_minor=line.unit_amount_minor,
                    amount_minor=line.amount_minor,
                )
            )
        series = f"{now.year}"
        number = await invoice_repository.next_number(db, series)
        invoice.number = f"INV-{series}-{number:06d}"
        invoice.status = InvoiceStatus.OPEN
        invoice.issued_at = now
        invoice.due_at = now + timedelta(days=14)
        await record_event(
            db,
            "invoice.issued",
            actor_id=actor_id,
            subject_id=invoice.id,
            payload=self._payload(invoice),
        )
        await db.flush()
        return invoice

    async def mark_paid(self, db: AsyncSession, invoice_id: UUID, *, actor_id: UUID | None) -> Invoice:
        invoice = await invoice_repository.get(db, invoice_id, for_update=True)
        if invoice is None:
            raise NotFound("Invoice not found", code="invoice_not_found")
        if invoice.status == InvoiceStatus.OPEN:
            invoice.status = InvoiceStatus.PAID
            invoice.paid_at = datetime.now(UTC)
            await record_event(
                db, "invoice.paid", actor_id=actor_id, subject_id=invoice.id, payload=self._payload(invoice)
            )
            await db.flush()
        return invoice

    async def void(
        self, db: AsyncSession, invoice_id: UUID, *, actor_id: UUID | None, reason: str
    ) -> Invoice:
        invoice = await invoice_repository.get(db, invoice_id, for_update=True)
        if invoice is None:
            raise NotFound("Invoice not found", code="invoice_not_found")
        if invoice.status == InvoiceStatus.OPEN:
            invoice.status = InvoiceStatus.VOID
            invoice.voided_at = datetime.now(UTC)
            await record_event(
                db,
                "invoice.voided",
                actor_id=actor_id,
                subject_id=invoice.id,
                payload={**self._payload(invoice), "reason": reason},
            )
            await db.flush()
        return invoice

    async def by_reference(self, db: AsyncSession, kind: str, reference: str) -> Invoice | None:
        return await invoice_repository.by_reference(db, kind, reference)

    @staticmethod
    def _payload(invoice: Invoice) -> dict[str, object]:
        return {
            "invoiceId": str(invoice.id),
            "number": invoice.number,
            "userId": str(invoice.user_id),
            "kind": invoice.kind,
            "reference": invoice.reference,
            "currency": invoice.currency,
            "subtotalMinor": invoice.subtotal_minor,
            "taxMinor": invoice.tax_minor,
            "totalMinor": invoice.total_minor,
            "status": invoice.status,
        }


billing_service = BillingService()
