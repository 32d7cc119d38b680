"""Base pydantic models: camelCase on the wire, unknown fields refused on input."""

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Schema(BaseModel):
    """Response model: serialised in camelCase, readable from ORM objects."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class InputSchema(BaseModel):
    """Request body: camelCase accepted (snake_case too), unknown fields are a 422."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", str_strip_whitespace=True
    )


T = TypeVar("T")


class PaginationInfo(Schema):
    total: int
    page: int
    limit: int


class Page(Schema, Generic[T]):
    items: list[T]
    pagination: PaginationInfo
