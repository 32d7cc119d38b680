from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import AfterValidator, ConfigDict, Field, PlainSerializer, StringConstraints

from app.core.schemas import NO_NUL, InputSchema, Schema

ProviderKind = Literal["openai_compatible", "anthropic"]


def _base_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL with a host, e.g. https://api.openai.com/v1")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not carry a query, a fragment or credentials (the API key has its own field)")
    return value.rstrip("/")


def _plain_decimal(value: Decimal) -> str:
    return format(value.normalize(), "f")


ProviderName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_NUL)]
BaseUrl = Annotated[str, StringConstraints(min_length=1, max_length=500), AfterValidator(_base_url)]
ApiKey = Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=NO_NUL)]
ModelKey = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$")
]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
DisplayName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
Price = Annotated[Decimal, Field(ge=0, le=1_000_000, max_digits=12, decimal_places=6)]
PriceOut = Annotated[Decimal, PlainSerializer(_plain_decimal, return_type=str)]


class LlmProviderOut(Schema):
    """An LLM provider; ``apiKey`` is masked (``****`` and its last four characters at most)."""

    id: UUID
    name: str
    kind: ProviderKind
    base_url: str
    api_key: str | None
    is_active: bool
    model_count: int
    created_at: datetime
    updated_at: datetime


class LlmProviderCreate(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "openai",
                    "kind": "openai_compatible",
                    "baseUrl": "https://api.openai.com/v1",
                    "apiKey": "sk-...",
                }
            ]
        }
    )

    name: ProviderName
    kind: ProviderKind
    base_url: BaseUrl
    api_key: ApiKey | None = None
    is_active: bool = True


class LlmProviderUpdate(InputSchema):
    """Every field optional; ``apiKey: null`` removes the key (an Ollama server needs none)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"apiKey": "sk-new-key", "isActive": True}]})

    name: ProviderName | None = None
    kind: ProviderKind | None = None
    base_url: BaseUrl | None = None
    api_key: ApiKey | None = None
    is_active: bool | None = None


class LlmModelOut(Schema):
    """A model builders may choose as a project's ``llm`` (its ``key``). Prices: USD per million
    tokens, as decimal strings; null when unknown. ``offline`` is built in (no id)."""

    id: UUID | None
    key: str
    display_name: str
    provider_id: UUID | None
    provider_name: str
    provider_kind: Literal["openai_compatible", "anthropic", "offline"]
    model: str
    input_price_per_million_tokens: PriceOut | None
    output_price_per_million_tokens: PriceOut | None
    is_active: bool
    built_in: bool


class LlmModelCreate(InputSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key": "openai/gpt-4o-mini",
                    "providerId": "0192f0c0-0000-7000-8000-000000000000",
                    "model": "gpt-4o-mini",
                    "displayName": "GPT-4o mini",
                    "inputPricePerMillionTokens": "0.15",
                    "outputPricePerMillionTokens": "0.60",
                }
            ]
        }
    )

    key: ModelKey
    provider_id: UUID
    model: ModelName
    display_name: DisplayName | None = None
    input_price_per_million_tokens: Price | None = None
    output_price_per_million_tokens: Price | None = None
    is_active: bool = True


class LlmModelUpdate(InputSchema):
    """Every field optional; prices may be set to null (unknown)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"outputPricePerMillionTokens": "0.55"}]})

    key: ModelKey | None = None
    provider_id: UUID | None = None
    model: ModelName | None = None
    display_name: DisplayName | None = None
    input_price_per_million_tokens: Price | None = None
    output_price_per_million_tokens: Price | None = None
    is_active: bool | None = None
