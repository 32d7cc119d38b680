"""Base pydantic models: camelCase on the wire, unknown fields refused on input."""

import math
from typing import Any, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

# JSON that parses but that Postgres (jsonb, text) or the response serialiser cannot take.
MAX_JSON_DEPTH = 32
NO_NUL = r"^[^\x00]*$"


def _check_storable(value: Any, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"values may be nested at most {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text may not contain NUL characters")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key, depth + 1)
            _check_storable(item, depth + 1)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _check_storable(item, depth + 1)


class Schema(BaseModel):
    """Response model: serialised in camelCase, readable from ORM objects."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class InputSchema(BaseModel):
    """Request body: camelCase accepted (snake_case too), unknown fields are a 422."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", str_strip_whitespace=True
    )

    @model_validator(mode="after")
    def _storable(self) -> Self:
        for name in type(self).model_fields:
            _check_storable(getattr(self, name), 0)
        return self


T = TypeVar("T")


class PaginationInfo(Schema):
    total: int
    page: int
    limit: int


class Page(Schema, Generic[T]):
    items: list[T]
    pagination: PaginationInfo
