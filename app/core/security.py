"""Password hashing (argon2id), access JWTs and opaque refresh tokens."""

import asyncio
import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from app.core.config import Settings

_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 "low memory" profile
# Verifying against this keeps unknown-email logins as slow as wrong-password ones.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


# argon2 takes ~100 ms of CPU by design. It runs in a worker thread (argon2-cffi releases the
# GIL) so a login does not stall every other request of the process.


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str | None, password: str) -> bool:
    matches = await asyncio.to_thread(_verify, password_hash or _DUMMY_HASH, password)
    return matches and password_hash is not None


def password_needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    persona: str
    session_id: uuid.UUID
    jti: str
    expires_at: int


class InvalidToken(Exception):
    pass


def create_access_token(
    settings: Settings, secret: str, *, user_id: uuid.UUID, persona: str, session_id: uuid.UUID
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "persona": persona,
        "sid": str(session_id),
        "iat": now,
        "exp": now + settings.access_token_ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=settings.jwt_algorithm)


def decode_access_token(settings: Settings, token: str, secret: str) -> AccessClaims:
    """Verify signature and expiry. Only the configured algorithm is accepted (never ``none``)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[settings.jwt_algorithm],
            options={"require": ["sub", "persona", "sid", "exp", "iat", "jti"]},
        )
        return AccessClaims(
            user_id=uuid.UUID(claims["sub"]),
            persona=str(claims["persona"]),
            session_id=uuid.UUID(claims["sid"]),
            jti=str(claims["jti"]),
            expires_at=int(claims["exp"]),
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("token_expired") from exc
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise InvalidToken("invalid_token") from exc


def new_refresh_token() -> str:
    return secrets.token_urlsafe(48)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
