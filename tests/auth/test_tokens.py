"""Access tokens (signed JWTs) and refresh tokens (opaque, rotated, stored hashed)."""

import hashlib
import time
import uuid

import jwt
import pytest
from sqlalchemy import text

from app.core.db import sessionmaker
from tests.factories import create_user, events_of, login, signed_in


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def secret_of(settings) -> str:
    return settings.jwt_secret.get_secret_value()


async def test_access_token_is_an_hs256_jwt_naming_user_persona_and_session(client, settings):
    user = await create_user("builder")
    tokens = await login(client, user.email)

    header = jwt.get_unverified_header(tokens["accessToken"])
    claims = jwt.decode(tokens["accessToken"], secret_of(settings), algorithms=["HS256"])

    assert header["alg"] == "HS256"
    assert set(claims) == {"sub", "persona", "sid", "exp", "iat", "jti"}
    assert claims["sub"] == str(user.id)
    assert claims["persona"] == "builder"
    assert claims["sid"] == tokens["user"]["sessionId"]
    assert claims["exp"] - claims["iat"] == tokens["expiresIn"] == 900
    assert abs(claims["iat"] - time.time()) < 60

    again = await login(client, user.email)
    second = jwt.decode(again["accessToken"], secret_of(settings), algorithms=["HS256"])
    assert second["jti"] != claims["jti"]
    assert second["sid"] != claims["sid"]


async def test_expired_access_token_is_401_token_expired(client, settings):
    account = await signed_in(client, "builder")
    claims = jwt.decode(account.access_token, secret_of(settings), algorithms=["HS256"])
    now = int(time.time())
    expired = jwt.encode({**claims, "iat": now - 1000, "exp": now - 10}, secret_of(settings), "HS256")

    response = await client.get("/api/auth/me", headers=bearer(expired))

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"
    assert response.headers["www-authenticate"] == "Bearer"
    assert (await client.get("/api/auth/me", headers=account.headers)).status_code == 200


# HS512 with the 39-byte test secret warns about the key length: the token is refused anyway.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_forged_or_unsigned_tokens_are_rejected(client, settings):
    account = await signed_in(client, "builder")
    claims = jwt.decode(account.access_token, secret_of(settings), algorithms=["HS256"])
    forged = jwt.encode({**claims, "persona": "super_admin"}, "not-the-secret-" + "x" * 50, "HS256")
    unsigned = jwt.encode({**claims, "persona": "super_admin"}, None, algorithm="none")
    other_algorithm = jwt.encode(claims, secret_of(settings), "HS512")

    for token in (forged, unsigned, other_algorithm, "not-a-jwt"):
        response = await client.get("/api/auth/me", headers=bearer(token))
        assert response.status_code == 401, token
        assert response.json()["error"]["code"] == "invalid_token"


async def test_refresh_rotates_the_pair_and_the_used_token_stops_working(client, settings):
    account = await signed_in(client, "builder")

    first = await client.post("/api/auth/refresh-token", json={"refreshToken": account.refresh_token})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refreshToken"] != account.refresh_token
    assert rotated["accessToken"] != account.access_token
    assert (
        rotated["user"]["sessionId"]
        == jwt.decode(account.access_token, secret_of(settings), algorithms=["HS256"])["sid"]
    )
    me = await client.get("/api/auth/me", headers=bearer(rotated["accessToken"]))
    assert me.status_code == 200
    assert me.json()["id"] == str(account.id)

    # The new refresh token is good for exactly one more rotation.
    second = await client.post("/api/auth/refresh-token", json={"refreshToken": rotated["refreshToken"]})
    assert second.status_code == 200
    assert second.json()["refreshToken"] not in {rotated["refreshToken"], account.refresh_token}

    reused = await client.post("/api/auth/refresh-token", json={"refreshToken": account.refresh_token})
    assert reused.status_code == 401


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_session(client):
    account = await signed_in(client, "builder")
    rotated = (
        await client.post("/api/auth/refresh-token", json={"refreshToken": account.refresh_token})
    ).json()
    newest = (
        await client.post("/api/auth/refresh-token", json={"refreshToken": rotated["refreshToken"]})
    ).json()
    # Cache the session as valid before the reuse happens.
    assert (await client.get("/api/auth/me", headers=bearer(newest["accessToken"]))).status_code == 200

    stolen = await client.post("/api/auth/refresh-token", json={"refreshToken": account.refresh_token})

    assert stolen.status_code == 401
    assert stolen.json()["error"]["code"] == "refresh_token_reused"
    newest_refresh = await client.post(
        "/api/auth/refresh-token", json={"refreshToken": newest["refreshToken"]}
    )
    assert newest_refresh.status_code == 401
    assert newest_refresh.json()["error"]["code"] == "session_revoked"
    me = await client.get("/api/auth/me", headers=bearer(newest["accessToken"]))
    assert me.status_code == 401
    assert me.json()["error"]["code"] == "session_revoked"

    detected = await events_of("session.refresh_reuse_detected")
    assert len(detected) == 1
    assert detected[0]["subject_id"] == newest["user"]["sessionId"]
    assert detected[0]["actor_id"] == account.id


async def test_reuse_in_one_session_leaves_the_users_other_sessions_alone(client):
    user = await create_user("builder")
    victim = await login(client, user.email)
    other = await login(client, user.email)
    await client.post("/api/auth/refresh-token", json={"refreshToken": victim["refreshToken"]})

    await client.post("/api/auth/refresh-token", json={"refreshToken": victim["refreshToken"]})

    assert (await client.get("/api/auth/me", headers=bearer(other["accessToken"]))).status_code == 200
    refreshed = await client.post("/api/auth/refresh-token", json={"refreshToken": other["refreshToken"]})
    assert refreshed.status_code == 200


async def test_refresh_tokens_are_stored_only_as_hashes(client):
    account = await signed_in(client, "end_user")
    rotated = (
        await client.post("/api/auth/refresh-token", json={"refreshToken": account.refresh_token})
    ).json()

    async with sessionmaker()() as db:
        rows = (await db.execute(text("SELECT token_hash FROM refresh_tokens"))).scalars().all()
        dump = str((await db.execute(text("SELECT * FROM refresh_tokens"))).all())

    assert len(rows) == 2
    for raw in (account.refresh_token, rotated["refreshToken"]):
        assert raw not in rows
        assert raw not in dump
        assert hashlib.sha256(raw.encode()).hexdigest() in rows


async def test_unknown_refresh_token_is_401(client):
    response = await client.post("/api/auth/refresh-token", json={"refreshToken": "x" * 64})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_refresh_token"


async def test_refresh_token_past_its_expiry_is_401(client):
    account = await signed_in(client, "builder")
    async with sessionmaker()() as db:
        await db.execute(
            text("UPDATE refresh_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = :h"),
            {"h": hashlib.sha256(account.refresh_token.encode()).hexdigest()},
        )
        await db.commit()

    response = await client.post("/api/auth/refresh-token", json={"refreshToken": account.refresh_token})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "refresh_token_expired"


async def test_access_token_of_an_expired_session_is_401(client):
    account = await signed_in(client, "builder")
    claims = jwt.decode(account.access_token, options={"verify_signature": False})
    async with sessionmaker()() as db:
        await db.execute(
            text("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = :sid"),
            {"sid": uuid.UUID(claims["sid"])},
        )
        await db.commit()

    response = await client.get("/api/auth/me", headers=account.headers)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "session_expired"
