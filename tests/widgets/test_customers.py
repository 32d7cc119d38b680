"""The host site's verified users (customers) through the widget: their conversations are theirs
alone, their answers carry who they are, and the widget's owner sees each customer's usage,
counted from the stored messages."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import select, update

from app.core.db import sessionmaker
from app.models import ChatMessage, ProjectChat
from tests.factories import events_of, signed_in
from tests.fakes.llm_server import FakeLLM, Reply
from tests.llm.helpers import configure_model, fake_llm, fake_llm_server
from tests.widgets.steps import (
    bought_project,
    generate,
    open_session,
    signed_identity,
    visitor_headers,
)

__all__ = ["fake_llm", "fake_llm_server"]

VISITOR = "visitor-shared-laptop"


@pytest.fixture
def settings_changes() -> dict[str, Any]:
    return {"llm_timeout_seconds": 5.0, "llm_max_retries": 0}


async def priced_model(fake: FakeLLM) -> str:
    """$2.50 per million input tokens, $10 per million output tokens."""
    return await configure_model(
        f"fake/gpt-{uuid4().hex[:6]}",
        base_url=fake.openai_base_url,
        provider_name="fake",
        input_price="2.50",
        output_price="10.00",
    )


async def ask(
    client: httpx.AsyncClient, session: dict[str, Any], text: str, conversation: str | None = None
) -> httpx.Response:
    body = {"message": text, **({"conversationId": conversation} if conversation else {})}
    return await client.post("/widget/v1/chat", json=body, headers=visitor_headers(session))


async def test_a_verified_customers_conversation_is_theirs_alone(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    shop = await bought_project(client, llm=await priced_model(fake_llm))
    widget = await generate(client, shop.buyer, shop.project)
    alice = await open_session(client, widget, visitorId=VISITOR, identity=signed_identity(widget, "alice"))
    fake_llm.script(Reply(text="Your order ships today."), Reply(text="Hello, anonymous visitor."))

    first = await ask(client, alice, "Where is my order?")
    conversation = first.json()["conversationId"]
    # The same browser (visitor id), signed out, or signed in as someone else.
    anonymous = await open_session(client, widget, visitorId=VISITOR)
    bob = await open_session(client, widget, visitorId=VISITOR, identity=signed_identity(widget, "bob"))
    snooped = [await ask(client, other, "And mine?", conversation) for other in (anonymous, bob)]
    alice_again = await open_session(
        client, widget, visitorId=VISITOR, identity=signed_identity(widget, "alice")
    )
    fake_llm.script(Reply(text="Still today."))
    followup = await ask(client, alice_again, "Really?", conversation)
    anonymous_chat = await ask(client, anonymous, "Hi")

    assert first.status_code == 200, first.text
    assert [(r.status_code, r.json()["error"]["code"]) for r in snooped] == [(404, "chat_not_found")] * 2
    assert followup.status_code == 200, followup.text
    assert followup.json()["conversationId"] == conversation
    assert anonymous_chat.json()["conversationId"] != conversation
    async with sessionmaker()() as db:
        chats = {str(chat.id): chat.customer_id for chat in (await db.execute(select(ProjectChat))).scalars()}
        questions = (await db.execute(select(ChatMessage).where(ChatMessage.role == "user"))).scalars().all()
    assert chats == {conversation: "alice", anonymous_chat.json()["conversationId"]: None}
    assert len(questions) == 3, "the refused questions were not stored"
    answers = await events_of("chat.message")
    assert [event["payload"]["customerId"] for event in answers] == ["alice", "alice", None]


async def test_the_owner_sees_each_customers_usage_counted_from_the_stored_messages(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    shop = await bought_project(client, llm=await priced_model(fake_llm))
    widget = await generate(
        client, shop.buyer, shop.project, behaviour={"rateLimits": {"messagesPerMinutePerVisitor": 100}}
    )
    other_widget = await generate(client, shop.buyer, shop.project)
    alice = await open_session(client, widget, identity=signed_identity(widget, "alice"))
    bob = await open_session(client, widget, identity=signed_identity(widget, "bob"))
    anonymous = await open_session(client, widget)
    elsewhere = await open_session(client, other_widget, identity=signed_identity(other_widget, "alice"))
    fake_llm.script(
        Reply(text="a1", input_tokens=1000, output_tokens=200),  # $0.0025 + $0.002
        Reply(text="a2", input_tokens=400, output_tokens=100),  # $0.001 + $0.001
        Reply(text="a3", input_tokens=2000, output_tokens=50),  # $0.005 + $0.0005
        Reply(text="b1", input_tokens=10, output_tokens=10),
        Reply(text="anonymous", input_tokens=999, output_tokens=999),
        Reply(text="other widget", input_tokens=999, output_tokens=999),
    )

    first = await ask(client, alice, "First question")
    await ask(client, alice, "Follow-up", first.json()["conversationId"])
    await ask(client, alice, "A new conversation")
    await ask(client, bob, "Bob here")
    await ask(client, anonymous, "Who am I?")
    await ask(client, elsewhere, "Same customer, another widget")
    report = await client.get(f"/api/widgets/{widget['id']}/customers", headers=shop.buyer.headers)

    assert report.status_code == 200, report.text
    body = report.json()
    assert (body["widgetId"], body["pagination"]) == (widget["id"], {"total": 2, "page": 1, "limit": 20})
    by_customer = {item["customerId"]: item for item in body["items"]}
    assert list(by_customer) == ["bob", "alice"], "the most recently seen first"
    alice_usage = by_customer["alice"]
    assert {k: v for k, v in alice_usage.items() if not k.endswith("SeenAt")} == {
        "customerId": "alice",
        "messages": 3,
        "answers": 3,
        "inputTokens": 3400,
        "outputTokens": 350,
        "costUsd": "0.012",
        "unpricedAnswers": 0,
        "conversations": 2,
    }
    assert alice_usage["firstSeenAt"] < alice_usage["lastSeenAt"] < by_customer["bob"]["lastSeenAt"]
    assert (by_customer["bob"]["messages"], by_customer["bob"]["costUsd"]) == (1, "0.000125")


async def test_the_customers_report_covers_the_period_asked_pages_and_sorts(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    shop = await bought_project(client, llm=await priced_model(fake_llm))
    widget = await generate(client, shop.buyer, shop.project)
    for customer in ("carol", "dave", "erin"):
        session = await open_session(client, widget, identity=signed_identity(widget, customer))
        fake_llm.script(Reply(text="Hi", input_tokens=100 * len(customer), output_tokens=1))
        assert (await ask(client, session, f"I am {customer}")).status_code == 200
    # Carol's conversation happened six weeks ago.
    async with sessionmaker()() as db:
        carols = select(ProjectChat.id).where(ProjectChat.customer_id == "carol").scalar_subquery()
        six_weeks_ago = datetime.now(UTC) - timedelta(days=42)
        await db.execute(
            update(ChatMessage).where(ChatMessage.chat_id == carols).values(created_at=six_weeks_ago)
        )
        await db.commit()
    path = f"/api/widgets/{widget['id']}/customers"
    headers = shop.buyer.headers

    recent = (await client.get(path, headers=headers)).json()
    then = six_weeks_ago.date().isoformat()
    back_then = (await client.get(f"{path}?from={then}&to={then}", headers=headers)).json()
    by_tokens = (await client.get(f"{path}?sort=-inputTokens&limit=1&page=2", headers=headers)).json()
    bad_sort = await client.get(f"{path}?sort=password", headers=headers)
    backwards = await client.get(f"{path}?from=2026-03-02&to=2026-03-01", headers=headers)

    assert [item["customerId"] for item in recent["items"]] == ["erin", "dave"]
    assert (back_then["from"], back_then["to"]) == (then, then)
    assert [item["customerId"] for item in back_then["items"]] == ["carol"]
    assert [item["customerId"] for item in by_tokens["items"]] == ["dave"]  # erin 400, dave 400: by id
    assert by_tokens["pagination"] == {"total": 2, "page": 2, "limit": 1}
    assert (bad_sort.status_code, bad_sort.json()["error"]["code"]) == (422, "invalid_sort")
    assert (backwards.status_code, backwards.json()["error"]["code"]) == (422, "invalid_period")


async def test_only_the_owner_and_administrators_read_the_customers(client: httpx.AsyncClient) -> None:
    shop = await bought_project(client)
    widget = await generate(client, shop.buyer, shop.project)
    session = await open_session(client, widget, identity=signed_identity(widget, "alice"))
    assert (await ask(client, session, "Hello")).status_code == 200
    admin = await signed_in(client, "super_admin")
    stranger = await signed_in(client, "end_user")
    path = f"/api/widgets/{widget['id']}/customers"

    owner_view = await client.get(path, headers=shop.buyer.headers)
    admin_view = await client.get(path, headers=admin.headers)
    builder_view = await client.get(path, headers=shop.builder.headers)
    stranger_view = await client.get(path, headers=stranger.headers)
    missing = await client.get(f"/api/widgets/{uuid4()}/customers", headers=shop.buyer.headers)

    assert [item["customerId"] for item in owner_view.json()["items"]] == ["alice"]
    assert admin_view.json() == owner_view.json()
    for refused in (builder_view, stranger_view):
        assert refused.json() == missing.json()
        assert (refused.status_code, refused.json()["error"]["code"]) == (404, "widget_not_found")
    assert UUID(owner_view.json()["widgetId"]) == UUID(widget["id"])
