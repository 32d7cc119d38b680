"""The ``Idempotency-Key`` request header, required where a retry must not act twice, and the
answers remembered for it (``answer_once``)."""

import hashlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

from fastapi import Header
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, ValidationFailed
from app.models import IdempotencyRecord


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


class IdempotencyRepository:
    """The answers given to requests that carried an ``Idempotency-Key``, per scope and caller."""

    async def claim(self, db: AsyncSession, scope: str, user_id: UUID, key: str, request_hash: str) -> bool:
        """Reserve ``key`` for this transaction; False when it was used before. A concurrent claim
        of the same key waits on the primary key until this transaction ends, so exactly one
        request acts and the other then reads its answer."""
        stmt = (
            insert(IdempotencyRecord)
            .values(
                scope=scope, user_id=user_id, key=key, request_hash=request_hash, status_code=0, response={}
            )
            .on_conflict_do_nothing()
            .returning(IdempotencyRecord.key)
        )
        return (await db.execute(stmt)).scalar_one_or_none() is not None

    async def get(self, db: AsyncSession, scope: str, user_id: UUID, key: str) -> IdempotencyRecord | None:
        stmt = select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope,
            IdempotencyRecord.user_id == user_id,
            IdempotencyRecord.key == key,
        )
        return (await db.execute(stmt)).scalar_one_or_none()


idempotency_repository = IdempotencyRepository()


async def answer_once(
    db: AsyncSession,
    *,
    scope: str,
    user_id: UUID,
    key: str,
    request: BaseModel,
    act: Callable[[], Awaitable[dict[str, Any]]],
    reused_message: str,
    status_code: int = 201,
) -> tuple[dict[str, Any], bool]:
    """Run ``act`` once per ``(scope, user_id, key)`` within the request's transaction.

    Returns its JSON answer and True; a retry with the same key and request gets the first answer
    back and False without acting; the same key with another request is 409
    ``idempotency_key_reused`` (``reused_message``). A rolled-back transaction frees the key."""
    request_hash = hashlib.sha256(request.model_dump_json().encode()).hexdigest()
    if not await idempotency_repository.claim(db, scope, user_id, key, request_hash):
        earlier = await idempotency_repository.get(db, scope, user_id, key)
        assert earlier is not None
        if earlier.request_hash != request_hash:
            raise Conflict(reused_message, code="idempotency_key_reused")
        return earlier.response, False
    answer = await act()
    record = await idempotency_repository.get(db, scope, user_id, key)
    assert record is not None
    record.status_code, record.response = status_code, answer
    await db.flush()
    return answer, True
