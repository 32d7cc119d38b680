"""What a stranger holding only a widget's public key (or an owner trying to stretch a plan)
cannot do: bring back a delisted widget before moderation, crash identity checks, replay a
widget's secret after it changed, flood sessions or messages, or multiply the monthly quota."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from app.core.db import sessionmaker
from app.models import ChatMessage, Widget
from app.widgets.security import InvalidIdentity, identity_signature, verify_identity
from tests.conftest import http_client
from tests.factories import events_of, signed_in
from tests.marketplace.steps import buy, moderate, publish, ready_project
from tests.widgets.steps import (
    SITE,
    bought_project,
    generate,
    open_session,
    signed_identity,
    visitor_headers,
    widget_quota_of_every_plan,
)

# --- standing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("settings_changes", [{"listing_review_required": True}])
async def test_a_delisted_listing_republished_by_its_builder_serves_again_only_once_approved(
    client: httpx.AsyncClient,
) -> None:
    builder = await signed_in(client, "builder")
    buyer = await signed_in(client, "end_user")
    admin = await signed_in(client, "super_admin")
    project = await ready_project(client, builder, name="Support Copilot")
    await publish(client, builder, project)
    await moderate(client, admin, project, "active")
    await buy(client, buyer, project)
    widget = await generate(client, buyer, project)
    await moderate(client, admin, project, "delisted")

    republished = await publish(client, builder, project)
    waiting = await open_session(client, widget, expect=410)
    status_while_waiting = (await client.get(f"/api/widgets/{widget['id']}", headers=buyer.headers)).json()
    await moderate(client, admin, project, "active")
    approved = await open_session(client, widget)

    assert republished["status"] == "pending_review"
    assert waiting["error"]["code"] == "widget_unavailable"
    assert waiting["error"]["details"]["reason"] == "listing_under_review"
    assert (status_while_waiting["status"], status_while_waiting["statusReason"]) == (
        "unavailable",
        "listing_under_review",
    )
    assert approved["token"]


# --- identity signatures ------------------------------------------------------------------------


@pytest.mark.parametrize("verification", [True, False])
@pytest.mark.parametrize("signature", ["é" * 64, "z" * 64, "ab", "0" * 65, "💥"])
async def test_a_malformed_identity_signature_is_a_422_not_a_crash(
    client: httpx.AsyncClient, verification: bool, signature: str
) -> None:
    shop = await bought_project(client)
    widget = await generate(
        client, shop.buyer, shop.project, behaviour={"identityVerification": verification}
    )

    refused = await open_session(
        client, widget, identity={**signed_identity(widget, "customer-1"), "signature": signature}, expect=422
    )

    assert refused["error"]["code"] == "validation_error"
    assert "signature" in str(refused["error"]["details"])


def test_comparing_a_signature_that_is_not_ascii_says_invalid() -> None:
    widget_id, exp, now = uuid4(), 2_000_000_000, 1_999_999_000
    for signature in ("é" * 64, "\ud800" * 64):
        with pytest.raises(InvalidIdentity) as refused:
            verify_identity("sk_secret", widget_id, "customer-1", exp, signature, now=now)
        assert refused.value.code == "identity_invalid"
    good = identity_signature("sk_secret", widget_id, "customer-1", exp)
    verify_identity("sk_secret", widget_id, "customer-1", exp, good.upper(), now=now)


# --- the secret key on a retried generate -------------------------------------------------------


async def test_a_retried_generate_stops_showing_the_secret_once_it_was_rotated(
    client: httpx.AsyncClient,
) -> None:
    shop = await bought_project(client)
    first = await generate(client, shop.buyer, shop.project, key="same-key")
    soon = await generate(client, shop.buyer, shop.project, key="same-key", expect=200)

    rotated = await client.post(f"/api/widgets/{first['id']}/rotate-secret", headers=shop.buyer.headers)
    after_rotation = await generate(client, shop.buyer, shop.project, key="same-key", expect=200)

    assert soon["secretKey"] == first["secretKey"]  # a lost answer can be retried at once
    assert rotated.status_code == 200, rotated.text
    assert after_rotation["id"] == first["id"]
    assert "secretKey" not in after_rotation
    assert rotated.json()["secretKey"] not in str(after_rotation)


async def test_a_retried_generate_stops_showing_the_secret_ten_minutes_after_creation(
    client: httpx.AsyncClient,
) -> None:
    shop = await bought_project(client)
    first = await generate(client, shop.buyer, shop.project, key="old-key")
    async with sessionmaker()() as db:
        await db.execute(
            update(Widget)
            .where(Widget.id == UUID(first["id"]))
            .values(created_at=datetime.now(UTC) - timedelta(minutes=11))
        )
        await db.commit()

    late = await generate(client, shop.buyer, shop.project, key="old-key", expect=200)

    assert late["id"] == first["id"]
    assert late["publicKey"] == first["publicKey"]
    assert "secretKey" not in late


# --- floods from one client, and one widget's ceiling ---------------------------------------------


async def _chat(client: httpx.AsyncClient, session: dict[str, Any], text: str = "Hi") -> httpx.Response:
    return await client.post("/widget/v1/chat", json={"message": text}, headers=visitor_headers(session))


@pytest.mark.parametrize("settings_changes", [{"widget_session_rate_limit_ip": "3/minute"}])
async def test_one_client_cannot_open_endless_sessions_by_changing_its_visitor_id(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)
    other = await generate(client, shop.buyer, shop.project)

    opened = [
        await open_session(client, widget, visitorId="visitor-aaaa"),
        await open_session(client, widget, visitorId="visitor-bbbb"),
        await open_session(client, widget),
    ]
    response = await client.post(
        "/widget/v1/session", json={"widgetKey": other["publicKey"]}, headers={"Origin": SITE}
    )
    async with http_client(app, ("198.51.100.20", 4000)) as elsewhere:
        neighbour = await open_session(elsewhere, widget, visitorId="visitor-aaaa")

    assert len({session["visitorId"] for session in opened}) == 3
    assert response.status_code == 429  # all widgets together: the address is the limit
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["access-control-allow-origin"] == SITE
    assert neighbour["token"]


@pytest.mark.parametrize("settings_changes", [{"widget_message_rate_limit_ip": "2/minute"}])
async def test_one_client_cannot_send_endless_messages_through_many_sessions(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)
    sessions = [await open_session(client, widget) for _ in range(3)]

    statuses = [(await _chat(client, session)).status_code for session in sessions[:2]]
    refused = await _chat(client, sessions[2])
    async with http_client(app, ("198.51.100.20", 4000)) as elsewhere:
        neighbour = await _chat(elsewhere, await open_session(elsewhere, widget))

    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["access-control-allow-origin"] == SITE
    assert neighbour.status_code == 200
    async with sessionmaker()() as db:
        questions = (await db.execute(select(ChatMessage).where(ChatMessage.role == "user"))).scalars().all()
    assert len(questions) == 3  # the refused message was neither stored nor counted
    assert (await open_session(client, widget))["quota"]["used"] == 3


@pytest.mark.parametrize("settings_changes", [{"widget_message_rate_limit": "3/minute"}])
async def test_a_widget_takes_at_most_its_ceiling_of_messages_a_minute_from_everyone(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)
    other_widget = await generate(client, shop.buyer, shop.project)

    statuses = []
    for n in range(4):
        async with http_client(app, (f"198.51.100.{n + 1}", 4000)) as visitor:
            statuses.append((await _chat(visitor, await open_session(visitor, widget))).status_code)
    other = await _chat(client, await open_session(client, other_widget))

    assert statuses == [200, 200, 200, 429]
    assert other.status_code == 200  # the ceiling is per widget


@pytest.mark.parametrize(
    "settings_changes", [{"trust_forwarded_for": True, "widget_session_rate_limit_ip": "2/minute"}]
)
async def test_behind_the_proxy_the_address_it_saw_counts_not_what_the_client_claims(
    client: httpx.AsyncClient,
) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)

    async def open_from(forwarded_for: str) -> int:
        response = await client.post(
            "/widget/v1/session",
            json={"widgetKey": widget["publicKey"]},
            headers={"Origin": SITE, "X-Forwarded-For": forwarded_for},
        )
        return response.status_code

    spoofed = [await open_from(f"10.9.9.{n}, 203.0.113.7") for n in range(3)]
    another = await open_from("10.9.9.1, 203.0.113.8")

    assert spoofed == [201, 201, 429]
    assert another == 201


@pytest.mark.parametrize("visitor_id", ["short", "x" * 65, "<script>alert(1)</script>", "v_ ok spaces"])
async def test_a_visitor_id_is_bounded_in_format(client: httpx.AsyncClient, visitor_id: str) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)

    refused = await open_session(client, widget, visitorId=visitor_id, expect=422)

    assert "visitorId" in str(refused["error"]["details"])


# --- one quota per owner and project ------------------------------------------------------------


async def test_more_widgets_of_one_project_share_the_owners_monthly_quota(
    client: httpx.AsyncClient,
) -> None:
    shop = await bought_project(client)
    second_buyer = await signed_in(client, "end_user")
    await buy(client, second_buyer, shop.project)
    first = await generate(client, shop.buyer, shop.project)
    second = await generate(client, shop.buyer, shop.project)
    theirs = await generate(client, second_buyer, shop.project)

    async with widget_quota_of_every_plan(5):
        on_first, on_second = await open_session(client, first), await open_session(client, second)
        statuses = [(await _chat(client, on_first, f"Q{n}")).status_code for n in range(3)]
        statuses += [(await _chat(client, on_second, f"Q{n}")).status_code for n in range(3, 6)]
        statuses.append((await _chat(client, on_first, "Q6")).status_code)
        quota_on_second = (await open_session(client, second))["quota"]
        other_owner = await _chat(client, await open_session(client, theirs))

    assert statuses == [200, 200, 200, 200, 200, 429, 429]
    assert quota_on_second == {"limit": 5, "used": 5, "remaining": 0}
    assert other_owner.status_code == 200  # another end user's widget has its own quota
    [warning] = await events_of("widget.quota_warning")
    [reached] = await events_of("widget.quota_reached")
    assert (warning["payload"]["used"], warning["subject_id"]) == (4, second["id"])
    assert (reached["payload"]["used"], reached["payload"]["projectId"]) == (5, str(shop.project))
