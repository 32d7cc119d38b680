"""Invoices: gapless numbers, line items, tax, and their life (draft -> open -> paid | void).

Invoices for plans and admin charges are paid through ``payment_service``: billing registers the
``invoice`` payment callbacks (paid -> ledger posting, and for a plan the switch of plan) and the
``paid_plan_checkout`` hook of the users domain, so neither of them imports billing.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.permissions import Perm
from app.billing.html import is_tax_included, render_invoice_html
from app.billing.repository import invoice_repository
from app.billing.schemas import ChargeRequest, InvoiceDetail, InvoiceLineOut, InvoiceOut, InvoicePayment
from app.core.config import Settings
from app.core.errors import Conflict, Forbidden, NotFound, ServiceUnavailable, ValidationFailed
from app.core.events import record_event
from app.core.idempotency import answer_once
from app.core.pagination import PageParams, apply_sort, paginate
from app.core.principal import Principal
from app.core.runtime import runtime
from app.models import Invoice, InvoiceLine, InvoiceStatus, Payment, PaymentStatus, Plan, User, UserStatus
from app.payments.providers import PaymentProviderError
from app.payments.service import payment_service
from app.revenue import ledger
from app.users.service import PlanCheckout, user_service

logger = logging.getLogger("bazaar.billing")

CHARGE_SCOPE = "billing.charge"
# Whose idempotency keys a charge made by the platform itself (no user acting) is filed under.
SYSTEM_ACTOR = UUID(int=0)
_SORT = {
    "createdAt": Invoice.created_at,
    "issuedAt": Invoice.issued_at,
    "dueAt": Invoice.due_at,
    "number": Invoice.number,
    "totalMinor": Invoice.total_minor,
}


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


def invoice_out(invoice: Invoice, lines: Sequence[InvoiceLine]) -> InvoiceOut:
    return InvoiceOut(
        id=invoice.id,
        number=invoice.number,
        user_id=invoice.user_id,
        status=invoice.status,
        kind=invoice.kind,
        reference=invoice.reference,
        currency=invoice.currency,
        subtotal_minor=invoice.subtotal_minor,
        tax_rate_bps=invoice.tax_rate_bps,
        tax_minor=invoice.tax_minor,
        total_minor=invoice.total_minor,
        amount_minor=invoice.total_minor,
        tax_included=is_tax_included(invoice, lines),
        items=[InvoiceLineOut.model_validate(line) for line in lines],
        customer_name=invoice.customer_name,
        customer_email=invoice.customer_email,
        memo=invoice.memo,
        issued_at=invoice.issued_at,
        due_at=invoice.due_at,
        due_date=invoice.due_at,
        paid_at=invoice.paid_at,
        voided_at=invoice.voided_at,
        created_at=invoice.created_at,
    )


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

    async def credit(
        self, db: AsyncSession, *, kind: str, reference: str, reason: str, actor_id: UUID | None
    ) -> Invoice | None:
        """Issue a credit note cancelling the invoice of ``(kind, reference)`` (a refunded
        purchase): the original stays as it was, the credit note negates every line and total.
        Credit notes have their own gapless series (``CN-<year>-000001``) and are settled at
        once: the money has already gone back. None when there was no invoice to credit."""
        original = await invoice_repository.by_reference(db, kind, reference)
        if original is None or original.number is None:
            return None
        now = datetime.now(UTC)
        note = Invoice(
            user_id=original.user_id,
            status=InvoiceStatus.PAID,
            currency=original.currency,
            subtotal_minor=-original.subtotal_minor,
            tax_rate_bps=original.tax_rate_bps,
            tax_minor=-original.tax_minor,
            total_minor=-original.total_minor,
            customer_name=original.customer_name,
            customer_email=original.customer_email,
            kind="credit_note",
            reference=str(original.id),
            memo=f"Credit note for {original.number}: {reason}",
            issued_at=now,
            paid_at=now,
        )
        db.add(note)
        await db.flush()
        lines = (await invoice_repository.lines(db, [original.id]))[original.id]
        for line in lines:
            db.add(
                InvoiceLine(
                    invoice_id=note.id,
                    position=line.position,
                    description=f"Refund: {line.description}",
                    quantity=line.quantity,
                    unit_amount_minor=-line.unit_amount_minor,
                    amount_minor=-line.amount_minor,
                )
            )
        series = f"CN-{now.year}"
        note.number = f"{series}-{await invoice_repository.next_number(db, series):06d}"
        await record_event(
            db,
            "invoice.credit_note_issued",
            actor_id=actor_id,
            subject_id=note.id,
            payload={**self._payload(note), "creditedInvoiceId": str(original.id), "reason": reason},
        )
        await db.flush()
        return note

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

    # --- reading --------------------------------------------------------------------------

    async def list_visible(
        self,
        db: AsyncSession,
        actor: Principal,
        params: PageParams,
        *,
        user_id: UUID | None,
        status: str | None,
        kind: str | None,
    ) -> tuple[list[InvoiceOut], int]:
        """Everyone sees their own invoices; administrators see all and may filter by user."""
        if not actor.can(Perm.PLATFORM_ADMIN):
            if user_id is not None and user_id != actor.user_id:
                raise Forbidden("Only administrators list other users' invoices", code="permission_denied")
            user_id = actor.user_id
        stmt = invoice_repository.search(user_id=user_id, status=status, kind=kind)
        stmt = apply_sort(stmt, params.sort, _SORT, default="-createdAt", tiebreak=Invoice.id)
        invoices, total = await paginate(db, stmt, params)
        lines = await invoice_repository.lines(db, [i.id for i in invoices])
        return [invoice_out(i, lines[i.id]) for i in invoices], total

    async def get_visible(self, db: AsyncSession, actor: Principal, invoice_id: UUID) -> Invoice:
        """The invoice, for its customer or an administrator; anyone else gets the 404 of a
        missing one."""
        invoice = await invoice_repository.get(db, invoice_id)
        if invoice is None or not actor.is_self_or(invoice.user_id, Perm.PLATFORM_ADMIN):
            raise NotFound("Invoice not found", code="invoice_not_found")
        return invoice

    async def detail(self, db: AsyncSession, invoice: Invoice) -> InvoiceDetail:
        lines = (await invoice_repository.lines(db, [invoice.id]))[invoice.id]
        payment = await payment_service.for_invoice(db, invoice.id)
        return InvoiceDetail(
            **invoice_out(invoice, lines).model_dump(),
            payment=InvoicePayment(
                id=payment.id,
                status=payment.status,
                provider=payment.provider,
                checkout_url=payment.checkout_url if payment.status == PaymentStatus.PENDING else None,
            )
            if payment is not None
            else None,
        )

    async def render_html(self, db: AsyncSession, settings: Settings, invoice: Invoice) -> str:
        lines = (await invoice_repository.lines(db, [invoice.id]))[invoice.id]
        return render_invoice_html(invoice, lines, issuer=settings.invoice_issuer)

    # --- charges --------------------------------------------------------------------------

    async def charge_once(
        self,
        db: AsyncSession,
        settings: Settings,
        *,
        actor_id: UUID | None,
        body: ChargeRequest,
        idempotency_key: str,
    ) -> tuple[dict[str, Any], bool]:
        """Charge a user (administrators, or the platform itself with ``actor_id=None``).

        Returns the answer (the invoice with its payment, JSON) and whether this call charged;
        a retry with the same key gets the first answer back and charges nothing."""

        async def charge_answer() -> dict[str, Any]:
            invoice = await self.charge(db, settings, actor_id=actor_id, body=body)
            return (await self.detail(db, invoice)).model_dump(mode="json", by_alias=True)

        return await answer_once(
            db,
            scope=CHARGE_SCOPE,
            user_id=actor_id or SYSTEM_ACTOR,
            key=idempotency_key,
            request=body,
            act=charge_answer,
            reused_message="This Idempotency-Key was used for another charge",
        )

    async def charge(
        self, db: AsyncSession, settings: Settings, *, actor_id: UUID | None, body: ChargeRequest
    ) -> Invoice:
        """Issue a ``charge`` invoice (tax added on top) and ask for its total. The local provider
        settles at once (the invoice is paid on return); Stripe leaves it open until its webhook."""
        user = await user_service.get(db, body.user_id)
        if user is None:
            raise NotFound("User not found", code="user_not_found")
        if user.status == UserStatus.DELETED:
            raise Conflict("This account is closed", code="user_closed")
        lines = [LineItem(item.description, item.unit_amount_minor, item.quantity) for item in body.items]
        if sum(line.amount_minor for line in lines) == 0:
            raise ValidationFailed("A charge must be for more than nothing", code="charge_amount_zero")
        invoice = await self.issue(
            db,
            settings,
            user_id=user.id,
            kind="charge",
            reference=None,
            currency=body.currency,
            lines=lines,
            actor_id=actor_id,
            memo=body.memo,
        )
        await self._ask_payment(db, settings, invoice, description=f"Invoice {invoice.number}")
        return invoice

    # --- paid plans (the users domain's ``paid_plan_checkout``) ---------------------------

    async def checkout_plan(self, db: AsyncSession, user: User, plan: Plan) -> PlanCheckout:
        """Sell ``plan`` to ``user``: a ``plan`` invoice (tax on top of the plan price) and its
        payment. Asking again while a checkout is pending returns that checkout rather than a
        second invoice; after a failed payment the same invoice is asked for again."""
        settings = runtime().settings
        invoice = await invoice_repository.open_invoice(db, user.id, "plan", plan.code)
        payment: Payment | None = None
        if invoice is not None and (invoice.subtotal_minor, invoice.currency) == (
            plan.price_minor,
            plan.currency,
        ):
            payment = await payment_service.for_invoice(db, invoice.id)
            if payment is not None and payment.status != PaymentStatus.PENDING:
                payment = None
        else:
            invoice = await self.issue(
                db,
                settings,
                user_id=user.id,
                kind="plan",
                reference=plan.code,
                currency=plan.currency,
                lines=[LineItem(f"{plan.name} plan", plan.price_minor)],
                actor_id=user.id,
            )
        if payment is None:
            payment = await self._ask_payment(db, settings, invoice, description=f"Bazaar {plan.name} plan")
        paid = invoice.status == InvoiceStatus.PAID
        return PlanCheckout(
            invoice_id=invoice.id, paid=paid, checkout_url=None if paid else payment.checkout_url
        )

    async def _ask_payment(
        self, db: AsyncSession, settings: Settings, invoice: Invoice, *, description: str
    ) -> Payment:
        try:
            return await payment_service.start(
                db,
                settings,
                user_id=invoice.user_id,
                amount_minor=invoice.total_minor,
                currency=invoice.currency,
                description=description,
                customer_email=invoice.customer_email,
                invoice_id=invoice.id,
                metadata={"invoice_id": str(invoice.id), "invoice_number": invoice.number or ""},
            )
        except PaymentProviderError as exc:
            raise ServiceUnavailable(
                f"The payment provider did not accept the payment: {exc}", code="payment_provider_error"
            ) from exc

    # --- payment callbacks (kind ``invoice``) ---------------------------------------------

    async def settle_invoice(self, db: AsyncSession, payment: Payment) -> None:
        """The invoice's payment succeeded: mark it paid, post the revenue to the ledger and, for
        a plan, switch the customer to it. All in the transaction that recorded the payment."""
        assert payment.invoice_id is not None
        invoice = await invoice_repository.get(db, payment.invoice_id, for_update=True)
        if invoice is None or invoice.status != InvoiceStatus.OPEN:
            logger.warning(
                "payment for an invoice that is not open",
                extra={"payment_id": str(payment.id), "invoice_id": str(payment.invoice_id)},
            )
            return
        await self.mark_paid(db, invoice.id, actor_id=payment.user_id)
        await ledger.post(
            db,
            kind=invoice.kind,
            reference=f"invoice:{invoice.id}",
            currency=invoice.currency,
            legs=ledger.billing_legs(
                payment.amount_minor, payment.processor_fee_minor or 0, invoice.tax_minor
            ),
            actor_id=payment.user_id,
            memo=f"Invoice {invoice.number}",
            details={"paymentId": str(payment.id), "invoiceNumber": invoice.number},
        )
        if invoice.kind == "plan" and invoice.reference:
            await user_service.apply_plan(
                db, invoice.user_id, invoice.reference, actor_id=payment.user_id, invoice_id=invoice.id
            )

    async def record_payment_failed(self, db: AsyncSession, payment: Payment) -> None:
        """The invoice stays open (it can be paid again); the failure is an event."""
        assert payment.invoice_id is not None
        invoice = await invoice_repository.get(db, payment.invoice_id)
        if invoice is None or invoice.status != InvoiceStatus.OPEN:
            return
        await record_event(
            db,
            "invoice.payment_failed",
            actor_id=payment.user_id,
            subject_id=invoice.id,
            payload={
                **self._payload(invoice),
                "paymentId": str(payment.id),
                "reason": payment.failure_reason,
            },
        )
        await db.flush()

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
payment_service.on_succeeded["invoice"] = billing_service.settle_invoice
payment_service.on_failed["invoice"] = billing_service.record_payment_failed
user_service.paid_plan_checkout = billing_service.checkout_plan
