"""Login, token refresh with rotation and reuse detection, logout, persona switching, and the
per-request resolution of an access token to a ``Principal``."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.repository import session_repository
from app.auth.schemas import CurrentUser, LoginRequest, TokenResponse
from app.core.db import after_commit, sessionmaker
from app.core.errors import AppError, Forbidden, Unauthorized
from app.core.events import record_event
from app.core.principal import Principal
from app.core.runtime import Runtime, runtime
from app.core.security import (
    AccessClaims,
    InvalidToken,
    create_access_token,
    decode_access_token,
    hash_password,
    hash_refresh_token,
    new_refresh_token,
    password_needs_rehash,
    verify_password,
)
from app.models import AuthSession, RefreshToken, User, UserStatus
from app.users.service import user_service

# Reasons a user's access changed that end their sessions (others only refresh the cache).
_ENDS_SESSIONS = {"user_suspended", "user_deleted"}


# Verified access tokens remembered (signature checks skipped until they expire); the memo is
# emptied when full. The signature is what is cached, never the session's liveness.
_MAX_VERIFIED_TOKENS = 50_000


def _principal_key(session_id: UUID) -> str:
    return f"principal:{session_id}"


@dataclass(frozen=True)
class ClientInfo:
    ip: str
    user_agent: str | None


@dataclass(frozen=True)
class Authenticated:
    principal: Principal
    # The signed-in user as ``GET /api/auth/me`` answers it (a ``CurrentUser`` in JSON form).
    user: dict[str, Any]


class AuthService:
    def __init__(self) -> None:
        self._verified_tokens: dict[str, AccessClaims] = {}
        self._decoded: dict[bytes, dict[str, Any]] = {}

    async def login(
        self, db: AsyncSession, rt: Runtime, body: LoginRequest, client: ClientInfo
    ) -> TokenResponse:
        email = str(body.email).lower()
        limiter = rt.rate_limiter
        await limiter.hit(
            rt.settings.login_rate_limit_ip, "login-ip", client.ip, message="Too many login attempts"
        )
        await limiter.hit(
            rt.settings.login_rate_limit_account, "login-account", email, message="Too many login attempts"
        )
        user = await user_service.get_by_email(db, email)
        if not await verify_password(user.password_hash if user else None, body.password) or user is None:
            raise Unauthorized("Email or password is wrong", code="invalid_credentials")
        if user.status != UserStatus.ACTIVE:
            raise Forbidden("This account is suspended", code="account_suspended")
        personas = await user_service.personas(db, user.id)
        persona = body.persona or user.default_persona
        if persona not in personas:
            raise Forbidden(f"You do not hold the {persona} persona", code="persona_not_held")
        if password_needs_rehash(user.password_hash):
            user.password_hash = await hash_password(body.password)
        now = datetime.now(UTC)
        expires_at = now + timedelta(days=rt.settings.refresh_token_ttl_days)
        session = AuthSession(
            user_id=user.id,
            persona=persona,
            expires_at=expires_at,
            ip=client.ip[:64],
            user_agent=(client.user_agent or "")[:400] or None,
        )
        db.add(session)
        await db.flush()
        refresh_token = self._issue_refresh_token(db, session, now, expires_at)
        await user_service.record_login(db, user)
        await record_event(
            db,
            "session.login",
            actor_id=user.id,
            subject_id=session.id,
            payload={"persona": persona, "ip": client.ip},
        )
        current = await self._current_user(db, user, session, persona)
        return self._tokens(rt, session, current, refresh_token)

    async def refresh(self, db: AsyncSession, rt: Runtime, raw_token: str) -> TokenResponse | AppError:
        """Rotate a refresh token. Errors are returned, not raised: a detected reuse must
        commit the revocation of the whole session while the caller still gets a 401."""
        token = await session_repository.refresh_token_for_update(db, hash_refresh_token(raw_token))
        if token is None:
            return Unauthorized("Refresh token is not valid", code="invalid_refresh_token")
        found = await session_repository.get_with_user(db, token.session_id)
        if found is None:
            return Unauthorized("Refresh token is not valid", code="invalid_refresh_token")
        session, user = found
        now = datetime.now(UTC)
        if session.revoked_at is not None:
            return Unauthorized("Session has ended", code="session_revoked")
        if token.rotated_at is not None:
            await self._revoke(db, session, now, "refresh_token_reuse")
            await record_event(
                db,
                "session.refresh_reuse_detected",
                actor_id=user.id,
                subject_id=session.id,
                payload={"tokenId": str(token.id)},
            )
            return Unauthorized(
                "Refresh token was already used; the session has been revoked", code="refresh_token_reused"
            )
        if token.expires_at <= now or session.expires_at <= now:
            return Unauthorized("Refresh token has expired", code="refresh_token_expired")
        if user.status != UserStatus.ACTIVE:
            return Unauthorized("Account is not active", code="account_inactive")
        token.rotated_at = now
        session.expires_at = now + timedelta(days=rt.settings.refresh_token_ttl_days)
        if session.persona not in await user_service.personas(db, user.id):
            # An admin took away the persona this session was in: carry on in the default one.
            await record_event(
                db,
                "user.persona_changed",
                actor_id=user.id,
                subject_id=user.id,
                payload={"from": session.persona, "to": user.default_persona, "sessionId": str(session.id)},
            )
            session.persona = user.default_persona
        new_token = self._issue_refresh_token(db, session, now, session.expires_at)
        current = await self._current_user(db, user, session, session.persona)
        return self._tokens(rt, session, current, new_token)

    async def logout(self, db: AsyncSession, principal: Principal) -> None:
        session = await session_repository.get(db, principal.session_id)
        if session is None or session.revoked_at is not None:
            return
        await self._revoke(db, session, datetime.now(UTC), "logout")
        await record_event(db, "session.logout", actor_id=principal.user_id, subject_id=session.id)

    async def switch_persona(
        self, db: AsyncSession, rt: Runtime, principal: Principal, persona: str
    ) -> tuple[str, CurrentUser]:
        if persona not in principal.personas:
            # Switching only moves between personas already held: it never grants one.
            raise Forbidden(f"You do not hold the {persona} persona", code="persona_not_held")
        found = await session_repository.get_with_user(db, principal.session_id)
        if found is None:
            raise Unauthorized("Session has ended", code="session_revoked")
        session, user = found
        previous = session.persona
        if previous != persona:
            session.persona = persona
            await record_event(
                db,
                "user.persona_changed",
                actor_id=user.id,
                subject_id=user.id,
                payload={"from": previous, "to": persona, "sessionId": str(session.id)},
            )
            self._forget_after_commit(db, rt, [session.id])
        current = await self._current_user(db, user, session, persona)
        access = create_access_token(
            rt.settings, rt.jwt_secret, user_id=user.id, persona=persona, session_id=session.id
        )
        return access, current

    async def authenticate(self, rt: Runtime, token: str) -> Authenticated:
        """Verify an access token and its session: the hot path of every authenticated request.

        A verified token is remembered until it expires, and the session's principal is cached
        (in process, then Redis); logout, suspension and profile changes invalidate it when they
        commit. Only a cache miss opens a database session."""
        claims = self._claims(rt, token)
        key = _principal_key(claims.session_id)
        cached = await rt.cache.get(key)
        if cached:
            entry = self._decode(cached)
        else:
            async with sessionmaker()() as db:
                entry = await self._load_entry(db, claims.session_id)
            ttl = min(rt.settings.session_cache_ttl_seconds, int(entry["expiresAt"] - time.time()))
            if ttl > 0 and cached is None:
                # NX: never overwrite the marker an invalidation left while this request loaded.
                await rt.cache.set(key, orjson.dumps(entry), ttl, only_if_absent=True)
        if entry["expiresAt"] <= time.time():
            raise Unauthorized("Session has expired", code="session_expired")
        user: dict[str, Any] = entry["user"]
        if user["id"] != str(claims.user_id):
            raise Unauthorized("Access token is not valid", code="invalid_token")
        if user["activePersona"] != claims.persona:
            raise Unauthorized("Persona was switched; use the new access token", code="persona_changed")
        principal = Principal(
            user_id=claims.user_id,
            session_id=claims.session_id,
            persona=claims.persona,
            personas=tuple(user["personas"]),
            permissions=frozenset(user["permissions"]),
        )
        return Authenticated(principal=principal, user=user)

    def _decode(self, cached: bytes) -> dict[str, Any]:
        # The first-level cache hands back the same bytes object on every hit (and bytes keep
        # their hash), so remembering the decoded entry saves a JSON parse per request.
        entry = self._decoded.get(cached)
        if entry is None:
            if len(self._decoded) >= _MAX_VERIFIED_TOKENS:
                self._decoded.clear()
            entry = self._decoded[cached] = orjson.loads(cached)
        return entry

    def _claims(self, rt: Runtime, token: str) -> AccessClaims:
        claims = self._verified_tokens.get(token)
        if claims is not None and claims.expires_at > time.time():
            return claims
        try:
            claims = decode_access_token(rt.settings, token, rt.jwt_secret)
        except InvalidToken as exc:
            message = (
                "Access token has expired" if str(exc) == "token_expired" else "Access token is not valid"
            )
            raise Unauthorized(message, code=str(exc)) from exc
        if len(self._verified_tokens) >= _MAX_VERIFIED_TOKENS:
            self._verified_tokens.clear()
        self._verified_tokens[token] = claims
        return claims

    async def _load_entry(self, db: AsyncSession, session_id: UUID) -> dict[str, Any]:
        found = await session_repository.get_with_user(db, session_id)
        if found is None:
            raise Unauthorized("Session not found", code="session_revoked")
        session, user = found
        if session.revoked_at is not None:
            raise Unauthorized("Session has ended", code="session_revoked")
        if user.status != UserStatus.ACTIVE:
            raise Unauthorized("Account is not active", code="account_inactive")
        current = await self._current_user(db, user, session, session.persona)
        if session.persona not in current.personas:
            raise Unauthorized("Persona is no longer held", code="persona_not_held")
        return {
            "expiresAt": session.expires_at.timestamp(),
            "user": current.model_dump(mode="json", by_alias=True),
        }

    async def on_user_access_changed(self, db: AsyncSession, rt: Runtime, user_id: UUID, reason: str) -> None:
        if reason in _ENDS_SESSIONS:
            session_ids = await session_repository.revoke_user_sessions(
                db, user_id, datetime.now(UTC), reason
            )
        else:
            session_ids = await session_repository.live_session_ids(db, user_id)
        self._forget_after_commit(db, rt, session_ids)

    async def _revoke(self, db: AsyncSession, session: AuthSession, now: datetime, reason: str) -> None:
        session.revoked_at = now
        session.revoked_reason = reason
        await db.flush()
        self._forget_after_commit(db, runtime(), [session.id])

    @staticmethod
    def _forget_after_commit(db: AsyncSession, rt: Runtime, session_ids: list[UUID]) -> None:
        if not session_ids:
            return
        keys = [_principal_key(sid) for sid in session_ids]

        async def forget() -> None:
            await rt.cache.invalidate(*keys)

        after_commit(db, forget)

    @staticmethod
    def _issue_refresh_token(
        db: AsyncSession, session: AuthSession, now: datetime, expires_at: datetime
    ) -> str:
        raw = new_refresh_token()
        db.add(
            RefreshToken(
                session_id=session.id,
                token_hash=hash_refresh_token(raw),
                created_at=now,
                expires_at=expires_at,
            )
        )
        return raw

    @staticmethod
    async def _current_user(db: AsyncSession, user: User, session: AuthSession, persona: str) -> CurrentUser:
        profile = await user_service.profile(db, user)
        permissions = await user_service.permissions_of(db, persona)
        return CurrentUser(
            **profile.model_dump(),
            active_persona=persona,
            session_id=str(session.id),
            permissions=permissions,
        )

    @staticmethod
    def _tokens(rt: Runtime, session: AuthSession, current: CurrentUser, refresh_token: str) -> TokenResponse:
        access = create_access_token(
            rt.settings,
            rt.jwt_secret,
            user_id=session.user_id,
            persona=current.active_persona,
            session_id=session.id,
        )
        return TokenResponse(
            access_token=access,
            refresh_token=refresh_token,
            expires_in=rt.settings.access_token_ttl_seconds,
            user=current,
        )


auth_service = AuthService()


async def _invalidate_on_access_change(db: AsyncSession, user_id: UUID, reason: str) -> None:
    await auth_service.on_user_access_changed(db, runtime(), user_id, reason)


user_service.access_listeners.append(_invalidate_on_access_change)
