from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import ConfigDict, EmailStr, Field, StringConstraints

from app.core.schemas import InputSchema, Schema

PersonaName = Literal["super_admin", "builder", "end_user"]
SelfServicePersona = Literal["builder", "end_user"]
PlanCode = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9_]+$")]
Password = Annotated[str, StringConstraints(min_length=10, max_length=200)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class UserProfile(Schema):
    """The seed's UserProfile: what every user endpoint returns."""

    id: UUID
    email: str
    name: str
    persona: str = Field(description="Default persona (the one a new login starts in)")
    personas: list[str]
    plan: str
    status: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


class UserCreate(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "new@builders.example",
                    "password": "a-long-password",
                    "name": "New Builder",
                    "persona": "builder",
                }
            ]
        }
    )

    email: EmailStr
    password: Password
    name: Name
    persona: PersonaName = Field(description="Self sign-up: builder or end_user only")
    personas: list[PersonaName] | None = Field(
        None, description="Extra personas to hold (admins may grant any; sign-up only builder/end_user)"
    )
    metadata: dict[str, Any] = Field(default_factory=dict)


class UserUpdate(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "Ada Lovelace", "personas": ["builder", "end_user"]}]}
    )

    email: EmailStr | None = None
    name: Name | None = None
    password: Password | None = None
    current_password: str | None = Field(None, description="Required to change your own password or email")
    persona: PersonaName | None = Field(None, description="Default persona; must be one you hold")
    personas: list[PersonaName] | None = Field(
        None, description="Personas held: users add/remove builder and end_user, admins any"
    )
    metadata: dict[str, Any] | None = None


class UserStatusUpdate(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "suspended", "reason": "Chargeback fraud under review"}]}
    )

    status: Literal["active", "suspended"]
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class SubscriptionUpdate(InputSchema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"plan": "pro"}]})

    plan: PlanCode


class SubscriptionOut(Schema):
    id: UUID
    user_id: UUID
    plan: str
    status: str = Field(
        description="active; or pending_payment: a paid plan awaits payment at checkoutUrl and the "
        "current plan (shown) stays until it is paid"
    )
    start_date: datetime
    end_date: datetime | None
    limits: dict[str, Any]
    pending_plan: str | None = Field(None, description="The paid plan awaiting payment")
    invoice_id: UUID | None = Field(None, description="The invoice of a bought plan")
    checkout_url: str | None = Field(None, description="Where to pay the pending plan (Stripe Checkout)")
