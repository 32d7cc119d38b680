"""Ending sessions: logout, suspension and account deletion take effect at once, even for
access tokens whose session is cached (in Redis, or in-process without Redis)."""

import pytest
from sqlalchemy import text

from app.core.db import sessionmaker
from tests.factories import PASSWORD, create_user, events_of, login, signed_in

both_caches = pytest.mark.parametrize(
    "settings_changes", [{}, {"redis_url": None}], ids=["redis", "in_process"]
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me_status(client, token: str) -> int:
    return (await client.get("/api/auth/me", headers=bearer(token))).status_code


async def refresh(client, refresh_token: str):
    return await client.post("/api/auth/refresh-token", json={"refreshToken": refresh_token})


@both_caches
async def test_logout_ends_only_that_session_at_once(client):
    user = await create_user("builder")
    laptop = await login(client, user.email)
    phone = await login(client, user.email)
    assert await me_status(client, laptop["accessToken"]) == 200  # now cached
    assert await me_status(client, phone["accessToken"]) == 200

    response = await client.post("/api/auth/logout", headers=bearer(laptop["accessToken"]))

    assert response.status_code == 204
    me = await client.get("/api/auth/me", headers=bearer(laptop["accessToken"]))
    assert me.status_code == 401
    assert me.json()["error"]["code"] == "session_revoked"
    refreshed = await refresh(client, laptop["refreshToken"])
    assert refreshed.status_code == 401
    assert refreshed.json()["error"]["code"] == "session_revoked"

    assert await me_status(client, phone["accessToken"]) == 200
    assert (await refresh(client, phone["refreshToken"])).status_code == 200
    logouts = await events_of("session.logout")
    assert [(e["actor_id"], e["subject_id"]) for e in logouts] == [(user.id, laptop["user"]["sessionId"])]


async def test_logout_needs_a_live_token(client):
    account = await signed_in(client, "end_user")
    assert (await client.post("/api/auth/logout")).status_code == 401
    assert (await client.post("/api/auth/logout", headers=account.headers)).status_code == 204

    again = await client.post("/api/auth/logout", headers=account.headers)

    assert again.status_code == 401
    assert len(await events_of("session.logout")) == 1


@both_caches
async def test_suspension_locks_the_user_out_at_once_and_reactivation_lets_them_back(client):
    admin = await signed_in(client, "super_admin")
    user = await create_user("builder")
    first = await login(client, user.email)
    second = await login(client, user.email)
    for tokens in (first, second):
        assert await me_status(client, tokens["accessToken"]) == 200  # now cached

    suspended = await client.put(
        f"/api/users/{user.id}/status", json={"status": "suspended", "reason": "spam"}, headers=admin.headers
    )

    assert suspended.status_code == 200
    assert suspended.json()["status"] == "suspended"
    for tokens in (first, second):
        me = await client.get("/api/auth/me", headers=bearer(tokens["accessToken"]))
        assert me.status_code == 401
        assert me.json()["error"]["code"] == "session_revoked"
        assert (await refresh(client, tokens["refreshToken"])).status_code == 401
    blocked = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert blocked.status_code == 403
    assert blocked.json()["error"]["code"] == "account_suspended"
    assert await me_status(client, admin.access_token) == 200

    activated = await client.put(
        f"/api/users/{user.id}/status", json={"status": "active"}, headers=admin.headers
    )

    assert activated.status_code == 200
    assert activated.json()["status"] == "active"
    back = await login(client, user.email)
    assert await me_status(client, back["accessToken"]) == 200
    # Sessions ended by the suspension stay ended.
    assert await me_status(client, first["accessToken"]) == 401


async def test_suspended_user_with_wrong_password_learns_nothing_about_the_account(client):
    admin = await signed_in(client, "super_admin")
    user = await create_user("end_user")
    await client.put(f"/api/users/{user.id}/status", json={"status": "suspended"}, headers=admin.headers)

    response = await client.post("/api/auth/login", json={"email": user.email, "password": "wrong-password"})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


async def test_only_admins_suspend_and_not_themselves(client):
    admin = await signed_in(client, "super_admin")
    builder = await signed_in(client, "builder")
    other = await create_user("end_user")

    by_builder = await client.put(
        f"/api/users/{other.id}/status", json={"status": "suspended"}, headers=builder.headers
    )
    by_self = await client.put(
        f"/api/users/{admin.id}/status", json={"status": "suspended"}, headers=admin.headers
    )

    assert by_builder.status_code == 403
    assert by_self.status_code == 409
    assert by_self.json()["error"]["code"] == "cannot_change_self"
    assert await me_status(client, admin.access_token) == 200
    assert (await login(client, other.email))["user"]["status"] == "active"


@both_caches
async def test_admin_deleting_an_account_ends_its_sessions_at_once(client):
    admin = await signed_in(client, "super_admin")
    user = await create_user("builder")
    tokens = await login(client, user.email)
    assert await me_status(client, tokens["accessToken"]) == 200  # now cached

    response = await client.delete(f"/api/users/{user.id}", headers=admin.headers)

    assert response.status_code == 204
    me = await client.get("/api/auth/me", headers=bearer(tokens["accessToken"]))
    assert me.status_code == 401
    assert me.json()["error"]["code"] == "session_revoked"
    assert (await refresh(client, tokens["refreshToken"])).status_code == 401
    relogin = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert relogin.status_code == 401
    assert relogin.json()["error"]["code"] == "invalid_credentials"


@both_caches
async def test_closing_your_own_account_signs_you_out_everywhere(client):
    user = await create_user("end_user")
    here = await login(client, user.email)
    elsewhere = await login(client, user.email)
    assert await me_status(client, elsewhere["accessToken"]) == 200  # now cached

    response = await client.delete(f"/api/users/{user.id}", headers=bearer(here["accessToken"]))

    assert response.status_code == 204
    assert await me_status(client, here["accessToken"]) == 401
    assert await me_status(client, elsewhere["accessToken"]) == 401
    async with sessionmaker()() as db:
        reasons = (
            await db.execute(text("SELECT revoked_reason FROM sessions WHERE user_id = :u"), {"u": user.id})
        ).scalars()
        assert sorted(reasons) == ["user_deleted", "user_deleted"]


@both_caches
async def test_profile_change_is_visible_through_a_cached_session(client):
    account = await signed_in(client, "builder")
    assert (await client.get("/api/auth/me", headers=account.headers)).json()["name"] == "builder user"

    await client.put(f"/api/users/{account.id}", json={"name": "Ada"}, headers=account.headers)

    me = await client.get("/api/auth/me", headers=account.headers)
    assert me.status_code == 200
    assert me.json()["name"] == "Ada"
