"""Personas: switching between the ones a user holds, and changing which ones they hold."""

import jwt

from tests.factories import PASSWORD, create_user, events_of, login, signed_in


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def persona_of(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["persona"])


async def switch(client, token: str, persona: str):
    return await client.put("/api/auth/update-persona", json={"persona": persona}, headers=bearer(token))


async def test_builder_switches_to_end_user_and_gets_a_token_for_it(client):
    account = await signed_in(client, "builder", personas=["builder", "end_user"])
    before = (await client.get("/api/auth/me", headers=account.headers)).json()
    assert before["activePersona"] == "builder"
    assert "projects:create" in before["permissions"]

    response = await switch(client, account.access_token, "end_user")

    assert response.status_code == 200
    body = response.json()
    assert persona_of(body["accessToken"]) == "end_user"
    assert body["user"]["activePersona"] == "end_user"
    me = await client.get("/api/auth/me", headers=bearer(body["accessToken"]))
    assert me.status_code == 200
    assert me.json()["activePersona"] == "end_user"
    assert me.json()["permissions"] == ["marketplace:purchase"]
    assert me.json()["sessionId"] == before["sessionId"]
    create = await client.post("/api/projects", json={"name": "App"}, headers=bearer(body["accessToken"]))
    assert create.status_code == 403
    assert create.json()["error"]["code"] == "permission_denied"


async def test_old_personas_token_is_rejected_after_a_switch(client):
    account = await signed_in(client, "builder", personas=["builder", "end_user"])
    assert (await client.get("/api/auth/me", headers=account.headers)).status_code == 200  # now cached

    await switch(client, account.access_token, "end_user")

    stale = await client.get("/api/auth/me", headers=account.headers)
    assert stale.status_code == 401
    assert stale.json()["error"]["code"] == "persona_changed"
    build = await client.post("/api/projects", json={"name": "App"}, headers=account.headers)
    assert build.status_code == 401


async def test_refresh_after_a_switch_continues_in_the_new_persona(client):
    account = await signed_in(client, "builder", personas=["builder", "end_user"])
    await switch(client, account.access_token, "end_user")

    refreshed = await client.post("/api/auth/refresh-token", json={"refreshToken": account.refresh_token})

    assert refreshed.status_code == 200
    assert persona_of(refreshed.json()["accessToken"]) == "end_user"
    assert refreshed.json()["user"]["activePersona"] == "end_user"


async def test_switching_back_and_forth_records_each_change(client):
    account = await signed_in(client, "builder", personas=["builder", "end_user"])
    as_end_user = (await switch(client, account.access_token, "end_user")).json()["accessToken"]
    as_builder = (await switch(client, as_end_user, "builder")).json()["accessToken"]
    same_again = await switch(client, as_builder, "builder")
    assert same_again.status_code == 200

    changes = await events_of("user.persona_changed")

    assert sorted((e["payload"]["from"], e["payload"]["to"]) for e in changes) == [
        ("builder", "end_user"),
        ("end_user", "builder"),
    ]
    assert all(e["actor_id"] == account.id and e["subject_id"] == str(account.id) for e in changes)
    me = await client.get("/api/auth/me", headers=bearer(same_again.json()["accessToken"]))
    assert me.json()["activePersona"] == "builder"


async def test_switching_to_a_persona_not_held_is_403_and_grants_nothing(client):
    account = await signed_in(client, "builder", personas=["builder", "end_user"])

    response = await switch(client, account.access_token, "super_admin")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "persona_not_held"

    me = await client.get("/api/auth/me", headers=account.headers)
    assert me.status_code == 200
    assert me.json()["activePersona"] == "builder"
    assert me.json()["personas"] == ["builder", "end_user"]
    assert "users:manage" not in me.json()["permissions"]
    assert (await client.get("/api/users", headers=account.headers)).status_code == 403
    assert await events_of("user.persona_changed") == []


async def test_single_persona_user_cannot_switch_at_all(client):
    account = await signed_in(client, "end_user")

    response = await switch(client, account.access_token, "builder")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "persona_not_held"


async def test_login_in_a_persona_not_held_is_403(client):
    user = await create_user("builder", personas=["builder", "end_user"])

    as_admin = await client.post(
        "/api/auth/login", json={"email": user.email, "password": PASSWORD, "persona": "super_admin"}
    )
    as_end_user = await client.post(
        "/api/auth/login", json={"email": user.email, "password": PASSWORD, "persona": "end_user"}
    )

    assert as_admin.status_code == 403
    assert as_admin.json()["error"]["code"] == "persona_not_held"
    assert as_end_user.status_code == 200
    assert persona_of(as_end_user.json()["accessToken"]) == "end_user"
    assert [e["type"] for e in await events_of("session.")] == ["session.login"]


async def test_user_adds_end_user_persona_to_themselves_and_can_switch_to_it(client):
    account = await signed_in(client, "builder")
    assert (await client.get("/api/auth/me", headers=account.headers)).json()["personas"] == ["builder"]

    response = await client.put(
        f"/api/users/{account.id}", json={"personas": ["builder", "end_user"]}, headers=account.headers
    )

    assert response.status_code == 200
    assert response.json()["personas"] == ["builder", "end_user"]
    switched = await switch(client, account.access_token, "end_user")
    assert switched.status_code == 200
    assert switched.json()["user"]["activePersona"] == "end_user"
    roles = await events_of("user.roles_changed")
    assert [(e["payload"]["from"], e["payload"]["to"]) for e in roles] == [
        (["builder"], ["builder", "end_user"])
    ]


async def test_user_cannot_give_themselves_super_admin(client):
    account = await signed_in(client, "builder")

    response = await client.put(
        f"/api/users/{account.id}", json={"personas": ["builder", "super_admin"]}, headers=account.headers
    )

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "persona_not_allowed"
    me = await client.get("/api/auth/me", headers=account.headers)
    assert me.json()["personas"] == ["builder"]
    assert await events_of("user.roles_changed") == []


async def test_admin_grants_super_admin_and_the_user_can_then_switch_to_it(client):
    admin = await signed_in(client, "super_admin")
    account = await signed_in(client, "builder")

    response = await client.put(
        f"/api/users/{account.id}", json={"personas": ["builder", "super_admin"]}, headers=admin.headers
    )

    assert response.status_code == 200
    assert response.json()["personas"] == ["builder", "super_admin"]
    switched = await switch(client, account.access_token, "super_admin")
    assert switched.status_code == 200
    users = await client.get("/api/users", headers=bearer(switched.json()["accessToken"]))
    assert users.status_code == 200
    roles = [e for e in await events_of("user.roles_changed") if e["subject_id"] == str(account.id)]
    assert [(e["actor_id"], e["payload"]["to"]) for e in roles] == [(admin.id, ["builder", "super_admin"])]


async def test_losing_the_active_persona_ends_that_token(client):
    admin = await signed_in(client, "super_admin")
    account = await signed_in(client, "builder", personas=["builder", "end_user"])
    assert (await client.get("/api/auth/me", headers=account.headers)).status_code == 200  # now cached

    response = await client.put(
        f"/api/users/{account.id}", json={"personas": ["end_user"]}, headers=admin.headers
    )

    assert response.status_code == 200
    assert response.json()["persona"] == "end_user"
    me = await client.get("/api/auth/me", headers=account.headers)
    assert me.status_code == 401
    assert me.json()["error"]["code"] == "persona_not_held"
    relogin = await login(client, account.email)
    assert relogin["user"]["activePersona"] == "end_user"


async def test_refresh_after_losing_the_active_persona_continues_in_the_default_one(client):
    admin = await signed_in(client, "super_admin")
    account = await signed_in(client, "builder", personas=["builder", "end_user"])
    await client.put(f"/api/users/{account.id}", json={"personas": ["end_user"]}, headers=admin.headers)

    refreshed = await client.post("/api/auth/refresh-token", json={"refreshToken": account.refresh_token})

    assert refreshed.status_code == 200
    body = refreshed.json()
    assert body["user"]["activePersona"] == "end_user"
    assert persona_of(body["accessToken"]) == "end_user"
    me = await client.get("/api/auth/me", headers=bearer(body["accessToken"]))
    assert me.status_code == 200
    assert me.json()["activePersona"] == "end_user"
    changes = [e["payload"] for e in await events_of("user.persona_changed")]
    assert changes[-1]["from"] == "builder"
    assert changes[-1]["to"] == "end_user"
