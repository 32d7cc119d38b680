"""The ``Idempotency-Key`` request header: required where a retry must not act twice."""

from typing import Annotated

from fastapi import Header

from app.core.errors import ValidationFailed


def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="A unique key per intended action (for example a UUID); a retry with the "
            "same key returns the first answer instead of acting twice.",
        ),
    ] = None,
) -> str:
    if key is None or not key.strip():
        raise ValidationFailed("The Idempotency-Key header is required", code="idempotency_key_required")
    key = key.strip()
    if len(key) > 200 or not key.isprintable():
        raise ValidationFailed(
            "Idempotency-Key must be printable and at most 200 characters", code="idempotency_key_invalid"
        )
    return key
