"""LLM providers and the models builders may choose for their projects (admin configuration)."""

from decimal import Decimal
from uuid import UUID

from sqlalchemy import CheckConstraint, ForeignKey, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin

PROVIDER_KINDS = ("openai_compatible", "anthropic")


class LlmProvider(IdMixin, TimestampMixin, Base):
    __tablename__ = "llm_providers"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(30))
    base_url: Mapped[str] = mapped_column(String(500))
    # Fernet token (app.core.crypto.secret_box); never returned in clear.
    api_key_encrypted: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (CheckConstraint("kind IN ('openai_compatible', 'anthropic')", name="kind"),)


class LlmModel(IdMixin, TimestampMixin, Base):
    __tablename__ = "llm_models"

    # What ``Project.llm`` holds, e.g. ``openai/gpt-4o-mini``.
    key: Mapped[str] = mapped_column(String(200), unique=True)
    provider_id: Mapped[UUID] = mapped_column(ForeignKey("llm_providers.id"), index=True)
    # The name sent to the provider.
    model: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str] = mapped_column(String(200))
    # USD per million tokens; NULL when the price is unknown.
    input_price_per_mtok: Mapped[Decimal | None] = mapped_column(Numeric(12, 6))
    output_price_per_mtok: Mapped[Decimal | None] = mapped_column(Numeric(12, 6))
    is_active: Mapped[bool] = mapped_column(default=True)
