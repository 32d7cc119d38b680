"""Generating, reading, configuring and listing widgets."""

import httpx

from app.core.crypto import secret_box
from app.core.runtime import runtime
from tests.factories import events_of, signed_in
from tests.marketplace.steps import ready_project
from tests.widgets.steps import SITE, bought_project, generate, open_session, signed_identity


async def test_an_end_user_who_bought_a_project_generates_its_widget(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)

    widget = await generate(
        client,
        shop.buyer,
        shop.project,
        allowedOrigins=["https://Shop.Example.com/", "https://*.example.org"],
        name="Help desk",
        appearance={"primaryColor": "#0F766E", "position": "bottom-left"},
    )

    assert widget["kind"] == "live"
    assert widget["status"] == "active"
    assert (widget["projectId"], widget["userId"], widget["name"]) == (
        str(shop.project),
        str(shop.buyer.id),
        "Help desk",
    )
    assert widget["publicKey"].startswith("pk_live_")
    assert widget["secretKey"].startswith("sk_")
    script = "http://127.0.0.1:8000/widget/v1/embed.js"
    assert widget["code"] == f'<script src="{script}" data-widget-key="{widget["publicKey"]}" async></script>'
    config = widget["config"]
    assert config["behaviour"] == {
        "allowedOrigins": ["https://shop.example.com", "https://*.example.org"],
        "identityVerification": False,
        "rateLimits": {"messagesPerMinutePerVisitor": 10, "beaconsPerMinutePerVisitor": 120},
    }
    assert config["appearance"]["primaryColor"] == "#0f766e"
    assert config["appearance"]["position"] == "bottom-left"
    assert config["appearance"]["title"] == "Chat with us"
    [created] = await events_of("widget.created")
    assert created["payload"]["widgetId"] == widget["id"]
    assert created["payload"]["purchaseId"] == shop.purchase
    assert created["actor_id"] == shop.buyer.id


async def test_the_secret_key_is_stored_encrypted_and_shown_only_when_generated(
    client: httpx.AsyncClient,
) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)

    read = await client.get(f"/api/widgets/{widget['id']}", headers=shop.buyer.headers)

    assert read.status_code == 200
    assert "secretKey" not in read.json()
    assert widget["secretKey"] not in read.text
    from sqlalchemy import select

    from app.core.db import sessionmaker
    from app.models import Widget

    async with sessionmaker()() as db:
        stored = (await db.execute(select(Widget.secret_encrypted))).scalar_one()
    assert widget["secretKey"] not in stored
    assert secret_box(runtime().settings).decrypt(stored) == widget["secretKey"]


async def test_without_a_completed_purchase_there_is_no_widget(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    stranger = await signed_in(client, "end_user")

    refused = await client.post(
        "/api/widgets/generate",
        json={"projectId": str(shop.project), "allowedOrigins": [SITE]},
        headers={**stranger.headers, "Idempotency-Key": "k1"},
    )
    unlisted = await ready_project(client, shop.builder, name="Not listed")
    hidden = await client.post(
        "/api/widgets/generate",
        json={"projectId": str(unlisted), "allowedOrigins": [SITE]},
        headers={**stranger.headers, "Idempotency-Key": "k2"},
    )

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "purchase_required"
    assert hidden.status_code == 404
    assert await events_of("widget.") == []


async def test_a_builder_previews_their_own_project_without_buying_it(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    other = await signed_in(client, "builder")
    project = await ready_project(client, builder, name="Draft bot")

    widget = await generate(client, builder, project)
    await generate(client, other, project, expect=404)

    assert (widget["kind"], widget["status"], widget["userId"]) == ("preview", "active", str(builder.id))


async def test_a_retry_with_the_same_idempotency_key_returns_the_same_widget(
    client: httpx.AsyncClient,
) -> None:
    shop = await bought_project(client)

    first = await generate(client, shop.buyer, shop.project, key="same-key")
    again = await generate(client, shop.buyer, shop.project, key="same-key", expect=200)
    other = await generate(client, shop.buyer, shop.project, key="other-key")
    listed = await client.get(f"/api/widgets/user/{shop.buyer.id}", headers=shop.buyer.headers)

    assert again["id"] == first["id"]
    assert again["secretKey"] == first["secretKey"]
    assert other["id"] != first["id"]
    assert listed.json()["pagination"]["total"] == 2
    assert len(await events_of("widget.created")) == 2


async def test_generate_refuses_bad_input_and_changes_nothing(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    cases = [
        ({"allowedOrigins": []}, "allowedOrigins"),
        ({"allowedOrigins": ["*"]}, "allowedOrigins"),
        ({"allowedOrigins": ["https://shop.example.com/checkout"]}, "allowedOrigins"),
        ({"allowedOrigins": ["shop.example.com"]}, "allowedOrigins"),
        ({"appearance": {"primaryColor": "red"}}, "primaryColor"),
        ({"appearance": {"avatarUrl": "http://cdn.example.com/a.png"}}, "avatarUrl"),
        ({"appearance": {"position": "top"}}, "position"),
        ({"behaviour": {"rateLimits": {"messagesPerMinutePerVisitor": 0}}}, "messagesPerMinutePerVisitor"),
        ({"surprise": 1}, "surprise"),
    ]
    for fields, field in cases:
        body = {"projectId": str(shop.project), "allowedOrigins": [SITE], **fields}
        response = await client.post(
            "/api/widgets/generate", json=body, headers={**shop.buyer.headers, "Idempotency-Key": field}
        )
        assert response.status_code == 422, (fields, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert field in str(error["details"]), error
    missing_key = await client.post(
        "/api/widgets/generate",
        json={"projectId": str(shop.project), "allowedOrigins": [SITE]},
        headers=shop.buyer.headers,
    )
    assert missing_key.json()["error"]["code"] == "idempotency_key_required"
    assert await events_of("widget.") == []


async def test_only_the_owner_and_admins_see_a_widget(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)
    admin = await signed_in(client, "super_admin")
    stranger = await signed_in(client, "end_user")

    for account, status in ((shop.buyer, 200), (admin, 200), (stranger, 404), (shop.builder, 404)):
        response = await client.get(f"/api/widgets/{widget['id']}", headers=account.headers)
        assert response.status_code == status, account.persona
    theirs = await client.get(f"/api/widgets/user/{shop.buyer.id}", headers=stranger.headers)
    assert theirs.status_code == 404
    everyone = await client.get(f"/api/widgets/user/{shop.buyer.id}", headers=admin.headers)
    assert [w["id"] for w in everyone.json()["items"]] == [widget["id"]]


async def test_the_owner_updates_the_config_partially_and_validated(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project, appearance={"title": "Ask us"})
    path = f"/api/widgets/{widget['id']}/config"

    response = await client.put(
        path,
        json={
            "appearance": {"primaryColor": "#111", "avatarUrl": "https://cdn.example.com/bot.png"},
            "behaviour": {
                "allowedOrigins": ["https://*.example.com"],
                "rateLimits": {"beaconsPerMinutePerVisitor": 30},
            },
        },
        headers=shop.buyer.headers,
    )
    bad = await client.put(path, json={"appearance": {"textColor": "#12345"}}, headers=shop.buyer.headers)
    stranger = await signed_in(client, "end_user")
    theirs = await client.put(path, json={"name": "Mine now"}, headers=stranger.headers)

    assert response.status_code == 200, response.text
    config = response.json()["config"]
    assert config["appearance"]["title"] == "Ask us"  # untouched
    assert config["appearance"]["primaryColor"] == "#111"
    assert config["appearance"]["avatarUrl"] == "https://cdn.example.com/bot.png"
    assert config["behaviour"]["allowedOrigins"] == ["https://*.example.com"]
    assert config["behaviour"]["rateLimits"] == {
        "messagesPerMinutePerVisitor": 10,
        "beaconsPerMinutePerVisitor": 30,
    }
    assert bad.status_code == 422
    assert theirs.status_code == 404
    [updated] = await events_of("widget.config_updated")
    assert updated["payload"]["changed"] == ["appearance", "behaviour"]
    reset = await client.put(path, json={"appearance": {"avatarUrl": None}}, headers=shop.buyer.headers)
    assert reset.json()["config"]["appearance"]["avatarUrl"] is None


async def test_rotating_the_secret_changes_which_signatures_verify(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project, behaviour={"identityVerification": True})
    old = widget["secretKey"]

    rotated = await client.post(f"/api/widgets/{widget['id']}/rotate-secret", headers=shop.buyer.headers)
    new = rotated.json()["secretKey"]

    assert rotated.status_code == 200
    assert new != old
    with_old_secret = signed_identity(widget, "c-1", secret=old)
    refused = await open_session(client, widget, identity=with_old_secret, expect=403)
    await open_session(client, widget, identity=signed_identity(widget, "c-1", secret=new))
    assert refused["error"]["code"] == "identity_invalid"
