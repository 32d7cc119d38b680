from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import ConfigDict, Field, StringConstraints

from app.core.schemas import InputSchema, Schema

Currency = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z]{3}$", to_lower=True)]
InvoiceStatusName = Literal["draft", "open", "paid", "void"]
InvoiceKind = Literal["purchase", "plan", "charge", "credit_note"]


class InvoiceLineOut(Schema):
    position: int
    description: str
    quantity: int
    unit_amount_minor: int
    amount_minor: int = Field(description="quantity x unitAmountMinor")


class InvoiceOut(Schema):
    """The seed's Invoice (id, userId, amount, items, status, dueDate), with the numbers a real
    invoice needs. Money is integer minor units of ``currency``."""

    id: UUID
    number: str | None = Field(
        description="Gapless per year: INV-<year>-<sequence>, credit notes CN-<year>-<sequence>; "
        "none for drafts"
    )
    user_id: UUID
    status: InvoiceStatusName
    kind: InvoiceKind = Field(
        description="purchase (marketplace), plan (subscription), charge, or credit_note (a refund)"
    )
    reference: str | None = Field(
        description="purchase id for purchases, plan code for plans, the credited invoice for credit notes"
    )
    currency: str
    subtotal_minor: int = Field(description="Before tax")
    tax_rate_bps: int = Field(description="Tax rate in basis points (2000 = 20%)")
    tax_minor: int
    total_minor: int = Field(description="subtotalMinor + taxMinor: what the customer pays")
    amount_minor: int = Field(description="The seed's `amount`: same as totalMinor")
    tax_included: bool = Field(description="Line prices already contain the tax (marketplace purchases)")
    items: list[InvoiceLineOut]
    customer_name: str
    customer_email: str
    memo: str
    issued_at: datetime | None
    due_at: datetime | None
    due_date: datetime | None = Field(description="The seed's `dueDate`: same as dueAt")
    paid_at: datetime | None
    voided_at: datetime | None
    created_at: datetime


class InvoicePayment(Schema):
    id: UUID
    status: str = Field(description="pending, succeeded, failed or refunded")
    provider: str
    checkout_url: str | None = Field(description="Where to pay (Stripe Checkout) while pending")


class InvoiceDetail(InvoiceOut):
    payment: InvoicePayment | None = Field(
        None, description="The latest payment asked for this invoice (plans and charges)"
    )


class ChargeItem(InputSchema):
    description: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    unit_amount_minor: int = Field(ge=0, le=100_000_000, description="Minor units, before tax")
    quantity: int = Field(1, ge=1, le=10_000)


class ChargeRequest(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "userId": "0193a5d2-7c1e-7b6a-9d2f-2f1c8e4b5a10",
                    "currency": "usd",
                    "items": [
                        {"description": "Onboarding workshop", "unitAmountMinor": 15000, "quantity": 2}
                    ],
                    "memo": "As agreed on the call of 3 March",
                }
            ]
        }
    )

    user_id: UUID = Field(description="Who is charged")
    currency: Currency
    items: Annotated[list[ChargeItem], Field(min_length=1, max_length=100)]
    memo: Annotated[str, StringConstraints(max_length=2000)] = ""
