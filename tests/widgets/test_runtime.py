"""A visitor on the end user's site: sessions (origins, identity, tokens), chat through the
widget with the fake LLM, the monthly quota, and what refunds, delistings and holds do."""

from typing import Any
from uuid import uuid4

import httpx
import pytest
from sqlalchemy import select

from app.core.db import sessionmaker
from app.core.runtime import runtime
from app.models import ChatMessage, ProjectChat
from app.widgets.security import issue_session_token, read_session_token
from tests.factories import events_of, signed_in
from tests.fakes.llm_server import FakeLLM, Reply
from tests.llm.helpers import configure_model, fake_llm, fake_llm_server, stream_chat
from tests.marketplace.steps import moderate, ready_project
from tests.widgets.steps import (
    SITE,
    Shop,
    bought_project,
    generate,
    moderate_as_platform,
    open_session,
    signed_identity,
    visitor_headers,
    widget_quota_of_every_plan,
)

__all__ = ["fake_llm", "fake_llm_server"]


@pytest.fixture
def settings_changes() -> dict[str, Any]:
    return {"llm_timeout_seconds": 5.0, "llm_max_retries": 0}


async def fake_model(fake: FakeLLM) -> str:
    return await configure_model(
        f"fake/gpt-{uuid4().hex[:6]}", base_url=fake.openai_base_url, provider_name="fake"
    )


# --- sessions ---------------------------------------------------------------------------------


async def test_a_visitor_on_an_allowed_page_gets_a_session(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project, appearance={"title": "Ask Acme"})

    response = await client.post(
        "/widget/v1/session", json={"widgetKey": widget["publicKey"]}, headers={"Origin": SITE}
    )

    assert response.status_code == 201, response.text
    assert response.headers["access-control-allow-origin"] == SITE
    assert "Origin" in response.headers["vary"]
    session = response.json()
    assert session["widgetId"] == widget["id"]
    assert session["visitorId"].startswith("v_")
    assert session["appearance"]["title"] == "Ask Acme"
    assert session["quota"] == {"limit": 500, "used": 0, "remaining": 500}
    kept = await open_session(client, widget, visitorId="visitor-from-storage")
    assert kept["visitorId"] == "visitor-from-storage"


@pytest.mark.parametrize(
    ("allowed", "origin", "expected"),
    [
        (["https://shop.example.com"], "https://shop.example.com", 201),
        (["https://shop.example.com"], "https://shop.example.com:443", 201),
        (["https://shop.example.com"], "http://shop.example.com", 403),
        (["https://shop.example.com"], "https://shop.example.com:8443", 403),
        (["https://shop.example.com"], "https://evil.example", 403),
        (["https://*.example.com"], "https://blog.example.com", 201),
        (["https://*.example.com"], "https://example.com", 403),
        (["http://localhost:3000"], "http://localhost:3000", 201),
        (["http://localhost:3000"], "null", 403),
    ],
)
async def test_the_page_origin_must_be_one_the_owner_allowed(
    client: httpx.AsyncClient, allowed: list[str], origin: str, expected: int
) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project, allowedOrigins=allowed)

    response = await client.post(
        "/widget/v1/session", json={"widgetKey": widget["publicKey"]}, headers={"Origin": origin}
    )

    assert response.status_code == expected, response.text
    if expected == 403:
        assert response.json()["error"]["code"] == "origin_not_allowed"
        assert "token" not in response.json()
        # A page with a real origin can read the refusal, so the script gives up at once and says
        # why; an opaque origin (`null`: sandboxed frames, file://) is told nothing.
        readable = response.headers.get("access-control-allow-origin")
        assert readable == (None if origin == "null" else origin)


async def test_sessions_need_an_origin_and_a_known_key(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)

    no_origin = await client.post("/widget/v1/session", json={"widgetKey": widget["publicKey"]})
    unknown = await client.post(
        "/widget/v1/session", json={"widgetKey": "pk_live_nope"}, headers={"Origin": SITE}
    )

    assert no_origin.status_code == 403
    assert no_origin.json()["error"]["code"] == "origin_required"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "widget_not_found"


async def test_preflights_are_answered_by_the_runtime_itself(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/widget/v1/chat",
        headers={
            "Origin": SITE,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == SITE
    assert "Authorization" in response.headers["access-control-allow-headers"]


@pytest.mark.parametrize("settings_changes", [{"cors_origins": ["https://dashboard.bazaar.example"]}])
async def test_the_dashboards_cors_list_does_not_stand_in_front_of_the_widget_runtime(
    client: httpx.AsyncClient,
) -> None:
    preflight = {"Origin": SITE, "Access-Control-Request-Method": "POST"}

    widget = await client.options("/widget/v1/session", headers=preflight)
    beacons = await client.options(f"/api/widgets/{uuid4()}/track-usage", headers=preflight)
    dashboard = await client.options("/api/auth/login", headers=preflight)

    assert widget.headers["access-control-allow-origin"] == SITE
    assert beacons.headers["access-control-allow-origin"] == SITE
    # The dashboard's own routes still answer only the configured dashboard origin.
    assert dashboard.status_code == 400
    assert "access-control-allow-origin" not in dashboard.headers


async def test_identity_verification_on_requires_a_valid_unexpired_signature(
    client: httpx.AsyncClient,
) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project, behaviour={"identityVerification": True})
    good = signed_identity(widget, "customer-42")

    missing = await open_session(client, widget, expect=403)
    forged = await open_session(client, widget, identity={**good, "userId": "customer-43"}, expect=403)
    stretched = await open_session(client, widget, identity={**good, "exp": good["exp"] + 3600}, expect=403)
    expired = await open_session(
        client, widget, identity=signed_identity(widget, "customer-42", expires_in=-1), expect=403
    )
    too_far = await open_session(
        client, widget, identity=signed_identity(widget, "customer-42", expires_in=25 * 3600), expect=403
    )
    unsigned_expiry = {"userId": "customer-42", "signature": good["signature"]}
    no_exp = await open_session(client, widget, identity=unsigned_expiry, expect=422)
    session = await open_session(client, widget, identity=good)

    assert {missing["error"]["code"], forged["error"]["code"], stretched["error"]["code"]} == {
        "identity_invalid"
    }
    assert too_far["error"]["code"] == "identity_invalid"
    assert "exp" in str(no_exp["error"]["details"])
    assert read_session_token(runtime().jwt_secret, session["token"]).customer_id == "customer-42"
    assert expired["error"]["code"] == "identity_expired"
    assert expired.get("token") is None


async def test_identity_verification_off_ignores_unsigned_and_expired_ids(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    shop = await bought_project(client, llm=await fake_model(fake_llm))
    widget = await generate(client, shop.buyer, shop.project)

    forged = await open_session(client, widget, identity={**signed_identity(widget, "customer-1"), "exp": 1})
    expired = await open_session(
        client, widget, identity=signed_identity(widget, "customer-1", expires_in=-5)
    )
    signed = await open_session(client, widget, identity=signed_identity(widget, "customer-1"))

    secret = runtime().jwt_secret
    assert read_session_token(secret, forged["token"]).customer_id is None
    assert read_session_token(secret, expired["token"]).customer_id is None
    assert read_session_token(secret, signed["token"]).customer_id == "customer-1"


async def test_expired_tampered_or_foreign_tokens_are_refused(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)
    session = await open_session(client, widget)
    expired, _ = issue_session_token(
        runtime().jwt_secret,
        -5,
        widget_id=widget["id"],
        visitor_id="v_someone1",
        customer_id=None,
        origin=SITE,
    )
    body = {"message": "Hi"}

    late = await client.post("/widget/v1/chat", json=body, headers=visitor_headers({"token": expired}))
    tampered = await client.post(
        "/widget/v1/chat", json=body, headers=visitor_headers({"token": session["token"][:-3] + "abc"})
    )
    other_page = await client.post(
        "/widget/v1/chat", json=body, headers=visitor_headers(session, origin="https://other.example.com")
    )
    user_token = await client.post(
        "/widget/v1/chat", json=body, headers={**shop.buyer.headers, "Origin": SITE}
    )

    assert (late.status_code, late.json()["error"]["code"]) == (401, "session_expired")
    assert late.headers["access-control-allow-origin"] == SITE  # the widget can read it and renew
    assert (tampered.status_code, tampered.json()["error"]["code"]) == (401, "invalid_session")
    assert (other_page.status_code, other_page.json()["error"]["code"]) == (403, "origin_not_allowed")
    assert user_token.status_code == 401
    async with sessionmaker()() as db:
        assert (await db.execute(select(ChatMessage))).first() is None


# --- chat -------------------------------------------------------------------------------------


async def test_a_visitor_chats_through_the_widget_and_the_conversation_is_theirs(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    shop = await bought_project(client, llm=await fake_model(fake_llm))
    widget = await generate(client, shop.buyer, shop.project)
    alice = await open_session(client, widget, visitorId="visitor-alice")
    bob = await open_session(client, widget, visitorId="visitor-bob")
    fake_llm.script(Reply(text="We ship in two days.", chunk_chars=5), Reply(text="Yes, worldwide."))

    status, events = await stream_chat(
        client, "/widget/v1/chat", {"message": "When do you ship?"}, visitor_headers(alice)
    )

    assert status == 200
    names = [name for name, _ in events]
    assert names[0] == "conversation"
    assert names[-2:] == ["usage", "done"]
    assert "".join(data["text"] for name, data in events if name == "delta") == "We ship in two days."
    conversation = events[0][1]["conversationId"]
    followup = await client.post(
        "/widget/v1/chat",
        json={"message": "Abroad too?", "conversationId": conversation},
        headers=visitor_headers(alice),
    )
    assert followup.status_code == 200, followup.text
    assert followup.json()["message"]["content"] == "Yes, worldwide."
    assert followup.headers["access-control-allow-origin"] == SITE
    stolen = await client.post(
        "/widget/v1/chat",
        json={"message": "Mine?", "conversationId": conversation},
        headers=visitor_headers(bob),
    )
    assert stolen.status_code == 404
    async with sessionmaker()() as db:
        chat = (await db.execute(select(ProjectChat))).scalar_one()
    assert (chat.channel, str(chat.widget_id), chat.visitor_id, chat.user_id) == (
        "widget",
        widget["id"],
        "visitor-alice",
        None,
    )
    [first, _] = await events_of("chat.message")
    assert first["payload"]["widgetId"] == widget["id"]
    assert first["payload"]["visitorId"] == "visitor-alice"
    studio = await client.get(f"/api/projects/{shop.project}/chats", headers=shop.builder.headers)
    assert studio.json()["pagination"]["total"] == 0  # widget conversations stay out of the studio


async def test_a_visitor_sending_too_fast_is_slowed_down(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    widget = await generate(
        client, shop.buyer, shop.project, behaviour={"rateLimits": {"messagesPerMinutePerVisitor": 2}}
    )
    session = await open_session(client, widget)

    statuses = []
    for n in range(3):
        response = await client.post(
            "/widget/v1/chat", json={"message": f"Hi {n}"}, headers=visitor_headers(session)
        )
        statuses.append(response.status_code)

    assert statuses == [200, 200, 429]
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["access-control-allow-origin"] == SITE


@pytest.fixture
async def tiny_quota() -> Any:
    """Every plan's widgets may answer 5 messages a month."""
    async with widget_quota_of_every_plan(5):
        yield


async def test_the_monthly_quota_warns_at_80_percent_and_stops_politely_at_100(
    client: httpx.AsyncClient, tiny_quota: None
) -> None:
    shop = await bought_project(client)
    widget = await generate(
        client, shop.buyer, shop.project, behaviour={"rateLimits": {"messagesPerMinutePerVisitor": 100}}
    )
    session = await open_session(client, widget)

    statuses = []
    for n in range(7):
        response = await client.post(
            "/widget/v1/chat", json={"message": f"Question {n}"}, headers=visitor_headers(session)
        )
        statuses.append(response.status_code)

    assert statuses == [200, 200, 200, 200, 200, 429, 429]
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert "this month" in error["message"]
    assert response.headers["access-control-allow-origin"] == SITE
    [warning] = await events_of("widget.quota_warning")
    [reached] = await events_of("widget.quota_reached")
    assert (warning["payload"]["used"], warning["payload"]["limit"]) == (4, 5)
    assert reached["payload"]["used"] == 5
    async with sessionmaker()() as db:
        questions = (await db.execute(select(ChatMessage).where(ChatMessage.role == "user"))).scalars().all()
    assert len(questions) == 5  # refused messages are not stored
    again = await open_session(client, widget)
    assert again["quota"] == {"limit": 5, "used": 5, "remaining": 0}


# --- refunds, delistings, holds -----------------------------------------------------------------


async def _refund(client: httpx.AsyncClient, shop: Shop) -> None:
    admin = await signed_in(client, "super_admin")
    response = await client.post(
        f"/api/marketplace/purchases/{shop.purchase}/refund", json={"reason": "Asked"}, headers=admin.headers
    )
    assert response.status_code == 200, response.text


async def test_a_refund_stops_new_sessions(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)
    await open_session(client, widget)

    await _refund(client, shop)

    gone = await open_session(client, widget, expect=410)
    assert gone["error"]["code"] == "widget_unavailable"
    assert gone["error"]["details"]["reason"] == "purchase_refunded"
    read = await client.get(f"/api/widgets/{widget['id']}", headers=shop.buyer.headers)
    assert (read.json()["status"], read.json()["statusReason"]) == ("unavailable", "purchase_refunded")


async def test_a_refund_stops_an_open_session_at_its_next_message(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)
    session = await open_session(client, widget)
    before = await client.post("/widget/v1/chat", json={"message": "Hi"}, headers=visitor_headers(session))

    await _refund(client, shop)
    after = await client.post(
        "/widget/v1/chat", json={"message": "Still there?"}, headers=visitor_headers(session)
    )

    assert before.status_code == 200, before.text
    error = after.json()["error"]
    assert (after.status_code, error["code"], error["details"]["reason"]) == (
        410,
        "widget_unavailable",
        "purchase_refunded",
    )
    assert after.headers["access-control-allow-origin"] == SITE, "the script can read why"
    async with sessionmaker()() as db:
        questions = (await db.execute(select(ChatMessage).where(ChatMessage.role == "user"))).scalars().all()
    assert [question.content for question in questions] == ["Hi"]
    renewal = await open_session(client, widget, visitorId=session["visitorId"], expect=410)
    assert renewal["error"]["details"]["reason"] == "purchase_refunded"


async def test_moderation_reaches_open_sessions_at_their_next_message(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)
    session = await open_session(client, widget)
    admin = await signed_in(client, "super_admin")

    async def ask() -> httpx.Response:
        return await client.post("/widget/v1/chat", json={"message": "Hi"}, headers=visitor_headers(session))

    serving = await ask()
    await moderate(client, admin, shop.project, "held")
    held = await ask()
    await moderate(client, admin, shop.project, "active")
    active = await ask()
    await moderate(client, admin, shop.project, "delisted")
    delisted = await ask()

    assert [r.status_code for r in (serving, held, active, delisted)] == [200, 200, 200, 410]
    assert delisted.json()["error"]["details"]["reason"] == "listing_delisted"


async def test_a_delisting_stops_new_sessions_but_a_hold_does_not(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)

    await moderate_as_platform(shop.project, "held")
    held = await open_session(client, widget)
    await moderate_as_platform(shop.project, "delisted")
    delisted = await open_session(client, widget, expect=410)

    assert held["token"]
    assert delisted["error"]["details"]["reason"] == "listing_delisted"


async def test_a_preview_widget_follows_its_project(client: httpx.AsyncClient) -> None:
    builder = await signed_in(client, "builder")
    project = await ready_project(client, builder, name="Draft bot")
    widget = await generate(client, builder, project)
    await open_session(client, widget)

    deleted = await client.delete(f"/api/projects/{project}", headers=builder.headers)

    assert deleted.status_code == 204
    gone = await open_session(client, widget, expect=410)
    assert gone["error"]["details"]["reason"] == "project_deleted"
