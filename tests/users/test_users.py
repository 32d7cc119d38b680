"""Accounts: sign-up, the admin's user list, profile edits, plans and closing an account."""

from typing import Any

import pytest
from sqlalchemy import text

from app.core.db import sessionmaker
from tests.factories import PASSWORD, create_user, events_of, login, signed_in


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_user(email: str, persona: str = "builder", **fields: Any) -> dict[str, Any]:
    return {"email": email, "password": PASSWORD, "name": "New user", "persona": persona, **fields}


async def db_rows(sql: str, **params: Any) -> list[Any]:
    async with sessionmaker()() as db:
        return list((await db.execute(text(sql), params)).all())


# Sign-up


async def test_visitor_signs_up_as_builder_and_can_log_in(client):
    response = await client.post("/api/users", json=new_user("Grace@Example.com", name="Grace"))

    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "grace@example.com"
    assert (body["name"], body["persona"], body["personas"]) == ("Grace", "builder", ["builder"])
    assert (body["plan"], body["status"]) == ("free", "active")
    assert not {"password", "passwordHash"} & set(body)
    tokens = await login(client, "grace@example.com")
    assert tokens["user"]["id"] == body["id"]
    created = await events_of("user.created")
    assert [(e["subject_id"], e["payload"]["signup"]) for e in created] == [(body["id"], True)]


async def test_visitor_signs_up_as_end_user_also_holding_builder(client):
    response = await client.post(
        "/api/users", json=new_user("buyer@example.com", "end_user", personas=["builder"])
    )

    assert response.status_code == 201
    assert response.json()["persona"] == "end_user"
    assert response.json()["personas"] == ["builder", "end_user"]


async def test_sign_up_cannot_claim_super_admin(client):
    as_admin = await client.post("/api/users", json=new_user("evil@example.com", "super_admin"))
    sneaked_in = await client.post(
        "/api/users", json=new_user("evil@example.com", "builder", personas=["super_admin"])
    )

    assert as_admin.status_code == 403
    assert as_admin.json()["error"]["code"] == "persona_not_allowed"
    assert sneaked_in.status_code == 403
    assert sneaked_in.json()["error"]["code"] == "persona_not_allowed"
    assert await db_rows("SELECT id FROM users") == []


async def test_sign_up_with_a_taken_email_in_other_case_is_409(client):
    await create_user("builder", email="taken@example.com")

    response = await client.post("/api/users", json=new_user("TAKEN@example.COM", "end_user"))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "email_taken"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"password": "short"}, "password"),
        ({"email": "not-an-email"}, "email"),
        ({"name": ""}, "name"),
        ({"persona": "wizard"}, "persona"),
        ({"isAdmin": True}, "isAdmin"),
    ],
    ids=["short_password", "bad_email", "empty_name", "unknown_persona", "unknown_field"],
)
async def test_invalid_sign_up_is_422_naming_the_field(client, changes, field):
    response = await client.post("/api/users", json={**new_user("val@example.com"), **changes})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(item["loc"][-1] == field for item in error["details"]["errors"])


async def test_signed_in_non_admin_cannot_create_accounts(client):
    builder = await signed_in(client, "builder")

    response = await client.post("/api/users", json=new_user("friend@example.com"), headers=builder.headers)

    assert response.status_code == 403
    assert await db_rows("SELECT id FROM users WHERE email = 'friend@example.com'") == []


@pytest.mark.parametrize("settings_changes", [{"self_signup_enabled": False}], ids=["signup_closed"])
async def test_with_sign_up_closed_only_admins_create_accounts(client):
    admin = await signed_in(client, "super_admin")

    anonymous = await client.post("/api/users", json=new_user("walkin@example.com"))
    by_admin = await client.post(
        "/api/users", json=new_user("invited@example.com", "super_admin"), headers=admin.headers
    )

    assert anonymous.status_code == 403
    assert anonymous.json()["error"]["code"] == "signup_disabled"
    assert by_admin.status_code == 201
    assert by_admin.json()["personas"] == ["super_admin"]
    assert (await login(client, "invited@example.com"))["user"]["activePersona"] == "super_admin"


# The admin's user list


async def test_admin_searches_filters_sorts_and_pages_users(client):
    admin = await signed_in(client, "super_admin")
    alice = await create_user("builder", email="alice@example.com")
    bob = await create_user("end_user", email="bob@example.com")
    carol = await create_user("builder", email="carol@example.com", personas=["builder", "end_user"])
    dave = await create_user("builder", email="dave@example.com")
    eve = await create_user("end_user", email="eve@example.com")
    h = admin.headers
    assert (
        await client.put(f"/api/users/{carol.id}/status", json={"status": "suspended"}, headers=h)
    ).is_success
    assert (
        await client.put(f"/api/users/{dave.id}/subscription", json={"plan": "pro"}, headers=h)
    ).is_success
    assert (await client.delete(f"/api/users/{eve.id}", headers=h)).status_code == 204

    async def emails(query: str) -> list[str]:
        response = await client.get(f"/api/users?{query}", headers=h)
        assert response.status_code == 200, response.text
        return [u["email"] for u in response.json()["items"]]

    everyone = (await client.get("/api/users", headers=h)).json()
    assert everyone["pagination"] == {"total": 5, "page": 1, "limit": 20}
    # Newest first by default; deleted accounts are left out.
    assert [u["email"] for u in everyone["items"]] == [
        "dave@example.com",
        "carol@example.com",
        "bob@example.com",
        "alice@example.com",
        admin.email,
    ]
    assert await emails("q=ALI") == ["alice@example.com"]
    assert await emails("q=end_user%20user") == ["bob@example.com"]  # matches the name
    assert await emails("q=%25") == []  # a literal %, not a wildcard
    assert await emails("persona=end_user&sort=email") == ["bob@example.com", "carol@example.com"]
    assert await emails("persona=super_admin") == [admin.email]
    assert await emails("status=suspended") == ["carol@example.com"]
    assert await emails("status=deleted") == ["eve@example.com"]
    assert await emails("plan=pro") == ["dave@example.com"]
    assert await emails("persona=builder&status=active&sort=email") == [
        "alice@example.com",
        "dave@example.com",
    ]

    by_email = sorted([admin.email, alice.email, bob.email, carol.email, dave.email])
    assert await emails("sort=email") == by_email
    assert await emails("sort=-email") == by_email[::-1]
    page = (await client.get("/api/users?sort=email&limit=2&page=3", headers=h)).json()
    assert page["pagination"] == {"total": 5, "page": 3, "limit": 2}
    assert [u["email"] for u in page["items"]] == by_email[4:]
    assert (await client.get("/api/users?sort=email&limit=2&page=4", headers=h)).json()["items"] == []

    bad_sort = await client.get("/api/users?sort=password_hash", headers=h)
    assert bad_sort.status_code == 422
    assert bad_sort.json()["error"]["code"] == "invalid_sort"
    assert (await client.get("/api/users?limit=101", headers=h)).status_code == 422


async def test_non_admins_cannot_list_users_or_see_others(client):
    builder = await signed_in(client, "builder")
    other = await create_user("end_user")

    listing = await client.get("/api/users", headers=builder.headers)
    someone = await client.get(f"/api/users/{other.id}", headers=builder.headers)
    themselves = await client.get(f"/api/users/{builder.id}", headers=builder.headers)

    assert listing.status_code == 403
    assert listing.json()["error"]["code"] == "permission_denied"
    assert someone.status_code == 404
    assert themselves.status_code == 200
    assert themselves.json()["email"] == builder.email
    assert (await client.get("/api/users")).status_code == 401


# Editing a profile


async def test_user_renames_themselves_but_not_others(client):
    account = await signed_in(client, "builder")
    other = await create_user("builder")

    renamed = await client.put(f"/api/users/{account.id}", json={"name": "Ada"}, headers=account.headers)
    someone_else = await client.put(
        f"/api/users/{other.id}", json={"name": "Hacked"}, headers=account.headers
    )

    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Ada"
    assert (await client.get(f"/api/users/{account.id}", headers=account.headers)).json()["name"] == "Ada"
    assert someone_else.status_code == 404
    assert [row.name for row in await db_rows("SELECT name FROM users WHERE id = :i", i=other.id)] == [
        "builder user"
    ]


async def test_changing_your_password_needs_the_current_one(client):
    account = await signed_in(client, "end_user")
    url = f"/api/users/{account.id}"
    new_password = "a-brand-new-passphrase"

    missing = await client.put(url, json={"password": new_password}, headers=account.headers)
    wrong = await client.put(
        url, json={"password": new_password, "currentPassword": "not-it"}, headers=account.headers
    )

    for response in (missing, wrong):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "current_password_required"
    assert (await login(client, account.email))["user"]["id"] == str(account.id)

    changed = await client.put(
        url, json={"password": new_password, "currentPassword": PASSWORD}, headers=account.headers
    )

    assert changed.status_code == 200
    old = await client.post("/api/auth/login", json={"email": account.email, "password": PASSWORD})
    assert old.status_code == 401
    assert (await login(client, account.email, new_password))["user"]["id"] == str(account.id)


async def test_changing_your_email_needs_the_current_password_and_a_free_address(client):
    account = await signed_in(client, "builder")
    taken = await create_user("end_user", email="taken@example.com")
    url = f"/api/users/{account.id}"

    missing = await client.put(url, json={"email": "new@example.com"}, headers=account.headers)
    clash = await client.put(
        url, json={"email": taken.email.upper(), "currentPassword": PASSWORD}, headers=account.headers
    )
    changed = await client.put(
        url, json={"email": "New@Example.com", "currentPassword": PASSWORD}, headers=account.headers
    )

    assert missing.status_code == 403
    assert missing.json()["error"]["code"] == "current_password_required"
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "email_taken"
    assert changed.status_code == 200
    assert changed.json()["email"] == "new@example.com"
    assert (await login(client, "new@example.com"))["user"]["id"] == str(account.id)


async def test_admin_resets_a_users_password_without_knowing_it(client):
    admin = await signed_in(client, "super_admin")
    user = await create_user("builder")

    response = await client.put(
        f"/api/users/{user.id}", json={"password": "reset-by-admin-123"}, headers=admin.headers
    )

    assert response.status_code == 200
    assert (await login(client, user.email, "reset-by-admin-123"))["user"]["id"] == str(user.id)


# Plans


async def test_admin_moves_a_user_to_pro(client):
    admin = await signed_in(client, "super_admin")
    user = await create_user("builder")

    response = await client.put(
        f"/api/users/{user.id}/subscription", json={"plan": "pro"}, headers=admin.headers
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["plan"], body["status"], body["endDate"]) == ("pro", "active", None)
    assert body["limits"]["maxProjects"] == 25
    subscriptions = await db_rows(
        "SELECT plan, status, end_date FROM subscriptions WHERE user_id = :u ORDER BY start_date", u=user.id
    )
    assert [(s.plan, s.status, s.end_date is not None) for s in subscriptions] == [
        ("free", "ended", True),
        ("pro", "active", False),
    ]
    assert (await client.get(f"/api/users/{user.id}", headers=admin.headers)).json()["plan"] == "pro"
    changes = await events_of("user.subscription_changed")
    assert [(e["actor_id"], e["subject_id"], e["payload"]["from"], e["payload"]["to"]) for e in changes] == [
        (admin.id, str(user.id), "free", "pro")
    ]


async def test_users_pay_for_a_paid_plan_and_can_go_back_to_free(client):
    account = await signed_in(client, "builder")
    url = f"/api/users/{account.id}/subscription"

    unknown = await client.put(url, json={"plan": "platinum"}, headers=account.headers)
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "unknown_plan"
    assert await events_of("user.subscription_changed") == []

    upgrade = await client.put(url, json={"plan": "pro"}, headers=account.headers)
    assert upgrade.status_code == 200
    assert upgrade.json()["plan"] == "pro"
    assert upgrade.json()["invoiceId"]
    downgrade = await client.put(url, json={"plan": "free"}, headers=account.headers)

    assert downgrade.status_code == 200
    assert downgrade.json()["plan"] == "free"
    assert downgrade.json()["limits"]["maxProjects"] == 3
    me = await client.get("/api/auth/me", headers=account.headers)
    assert me.json()["plan"] == "free"
    changes = await events_of("user.subscription_changed")
    assert [(e["actor_id"], e["payload"]["to"]) for e in changes] == [
        (account.id, "pro"),
        (account.id, "free"),
    ]


async def test_closed_account_keeps_its_row_and_frees_the_email(client):
    admin = await signed_in(client, "super_admin")
    account = await signed_in(client, "builder")

    closed = await client.delete(f"/api/users/{account.id}", headers=account.headers)

    assert closed.status_code == 204
    rows = await db_rows("SELECT status, deleted_at, email FROM users WHERE id = :u", u=account.id)
    assert [(r.status, r.deleted_at is not None, r.email) for r in rows] == [("deleted", True, account.email)]
    assert (await client.get(f"/api/users/{account.id}", headers=admin.headers)).status_code == 404
    deleted = await events_of("user.deleted")
    assert [(e["actor_id"], e["subject_id"]) for e in deleted] == [(account.id, str(account.id))]

    again = await client.post("/api/users", json=new_user(account.email.upper(), "end_user"))

    assert again.status_code == 201
    assert again.json()["id"] != str(account.id)
    tokens = await login(client, account.email)
    assert tokens["user"]["id"] == again.json()["id"]
    assert tokens["user"]["persona"] == "end_user"


async def test_users_cannot_close_someone_elses_account(client):
    account = await signed_in(client, "builder")
    other = await create_user("builder")

    response = await client.delete(f"/api/users/{other.id}", headers=account.headers)

    assert response.status_code == 404
    assert (await login(client, other.email))["user"]["status"] == "active"
