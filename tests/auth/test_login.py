from tests.factories import PASSWORD, create_user, events_of, login


async def test_login_returns_tokens_and_user_then_me_works(client):
    user = await create_user("builder")
    tokens = await login(client, user.email)
    assert tokens["tokenType"] == "Bearer"
    assert tokens["expiresIn"] == 900
    assert tokens["user"]["email"] == user.email
    me = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {tokens['accessToken']}"})
    assert me.status_code == 200
    body = me.json()
    assert body["activePersona"] == "builder"
    assert "projects:create" in body["permissions"]
    assert [e["type"] for e in await events_of("session.")] == ["session.login"]


async def test_wrong_password_is_401_with_error_shape(client):
    user = await create_user("end_user")
    response = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD + "x"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"
    assert await events_of("session.") == []
