"""A builder chats with their project in the studio: JSON or streamed answers, the prompt the LLM
gets, the tool loop, failures that keep the question, and the ``chat.message`` usage event."""

from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import func, select

from app.core.db import sessionmaker
from app.models import ChatMessage, LlmModel, ProjectChat
from tests.chat.conftest import KNOWLEDGE, Knowledge, StubToolset
from tests.chat.steps import ask, chat_project
from tests.factories import Account, create_project, events_of, signed_in
from tests.fakes.llm_server import Fail, FakeLLM, Hang, Reply, last_tool_result
from tests.llm.helpers import stream_chat

PROMPT = "You are the support agent of Acme. Answer in one sentence."


async def fake_project(owner: Account, fake: FakeLLM, **fields: Any) -> UUID:
    """A project on ``fake`` with the prompt and prices the tests check against."""
    return await chat_project(
        owner,
        fake.openai_base_url,
        prompt=PROMPT,
        input_price="0.15",
        output_price="0.60",
        provider_name="fake",
        **fields,
    )


async def stored_messages() -> list[tuple[str, str]]:
    async with sessionmaker()() as db:
        rows = await db.execute(
            select(ChatMessage.role, ChatMessage.content).order_by(ChatMessage.created_at)
        )
    return [(role, content) for role, content in rows.all()]


async def test_offline_project_answers_in_json_from_its_knowledge(
    client: httpx.AsyncClient, knowledge: Knowledge
) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner, name="Offline helper", prompt=PROMPT)

    response = await ask(client, owner, project, "How long do I have for refunds?")

    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"conversationId", "message"}
    message = answer["message"]
    assert message["role"] == "assistant"
    assert message["content"].startswith("[Offline model]")
    assert "Refunds are accepted within 30 days of delivery." in message["content"]
    metadata = message["metadata"]
    assert [c["fileName"] for c in metadata["citations"]] == ["refunds.md", "shipping.md"]
    assert metadata["citations"][0] == {
        "chunkId": "chunk-1",
        "fileId": "file-1",
        "fileName": "refunds.md",
        "ordinal": 2,
        "score": 0.91,
        "text": KNOWLEDGE[0].text,
    }
    assert metadata["model"] == "offline"
    assert metadata["toolCalls"] == []
    usage = metadata["usage"]
    assert usage["model"] == "offline"
    assert usage["inputTokens"] > 0
    assert usage["outputTokens"] == len(message["content"].split())
    assert usage["costUsd"] == "0.000000"
    assert knowledge.queries == [(project, "How long do I have for refunds?", 4)]


async def test_streamed_answer_arrives_as_server_sent_events_in_order(
    client: httpx.AsyncClient, fake_llm: FakeLLM, knowledge: Knowledge
) -> None:
    owner = await signed_in(client, "builder")
    project = await fake_project(owner, fake_llm)
    fake_llm.script(Reply(text="Thirty days, shipping excluded [1].", chunk_chars=6))

    status, events = await stream_chat(
        client, f"/api/projects/{project}/chat", {"message": "Refund window?"}, owner.headers
    )

    assert status == 200
    names = [name for name, _ in events]
    assert names[:2] == ["conversation", "citations"]
    assert names[-2:] == ["usage", "done"]
    assert set(names[2:-2]) == {"delta"}
    assert len(names[2:-2]) > 1, "the answer streams in pieces"
    conversation = events[0][1]
    streamed = "".join(data["text"] for name, data in events if name == "delta")
    assert streamed == "Thirty days, shipping excluded [1]."
    assert [c["chunkId"] for c in events[1][1]] == ["chunk-1", "chunk-2"]
    usage = events[-2][1]
    assert (usage["inputTokens"], usage["outputTokens"], usage["costUsd"]) == (11, 7, "0.000006")
    assert usage["latencyMs"] >= usage["firstTokenMs"] >= 0
    chat = await client.get(
        f"/api/projects/{project}/chats/{conversation['conversationId']}", headers=owner.headers
    )
    messages = chat.json()["messages"]
    assert [(m["id"], m["role"], m["content"]) for m in messages] == [
        (conversation["messageId"], "user", "Refund window?"),
        (events[-1][1]["messageId"], "assistant", streamed),
    ]


async def test_the_llm_gets_the_system_prompt_knowledge_history_and_tools(
    client: httpx.AsyncClient, fake_llm: FakeLLM, knowledge: Knowledge, toolset: StubToolset
) -> None:
    owner = await signed_in(client, "builder")
    project = await fake_project(owner, fake_llm, mcp_servers=["crm"])
    fake_llm.script(Reply(text="Thirty days."), Reply(text="No, shipping is not refunded."))

    first = await ask(client, owner, project, "What is the refund window?")
    conversation = first.json()["conversationId"]
    second = await ask(client, owner, project, "Is shipping refunded too?", conversation)

    assert second.status_code == 200, second.text
    assert second.json()["conversationId"] == conversation
    sent = fake_llm.requests[1].body
    system = sent["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith(PROMPT)
    assert "[1] refunds.md (part 2):\nRefunds are accepted within 30 days" in system["content"]
    assert "[2] shipping.md (part 0):" in system["content"]
    assert sent["messages"][1:] == [
        {"role": "user", "content": "What is the refund window?"},
        {"role": "assistant", "content": "Thirty days."},
        {"role": "user", "content": "Is shipping refunded too?"},
    ]
    assert [t["function"]["name"] for t in sent["tools"]] == ["crm__lookup_order"]
    assert toolset.opened_with == [["crm"], ["crm"]]


@pytest.mark.parametrize("settings_changes", [{"chat_history_messages": 2}])
async def test_only_the_last_history_messages_are_sent(
    client: httpx.AsyncClient, fake_llm: FakeLLM, knowledge: Knowledge
) -> None:
    owner = await signed_in(client, "builder")
    project = await fake_project(owner, fake_llm)
    conversation = None
    for n in range(3):
        fake_llm.script(Reply(text=f"answer {n}"))
        conversation = (await ask(client, owner, project, f"question {n}", conversation)).json()[
            "conversationId"
        ]

    assert [m["content"] for m in fake_llm.requests[-1].body["messages"][1:]] == [
        "question 1",
        "answer 1",
        "question 2",
    ]


async def test_tool_calls_run_and_their_results_feed_the_answer(
    client: httpx.AsyncClient, fake_llm: FakeLLM, knowledge: Knowledge, toolset: StubToolset
) -> None:
    owner = await signed_in(client, "builder")
    project = await fake_project(owner, fake_llm, mcp_servers=["crm"])
    fake_llm.script(
        Reply(text="", tool_calls=[("crm__lookup_order", {"id": "A-42"})], argument_deltas=4),
        Reply(text=lambda body: f"Your order: {last_tool_result(body)}."),
    )

    status, events = await stream_chat(
        client, f"/api/projects/{project}/chat", {"message": "Where is order A-42?"}, owner.headers
    )

    assert status == 200
    by_name = dict(events)
    assert by_name["tool_call"] == {"id": "call_0", "name": "crm__lookup_order", "arguments": {"id": "A-42"}}
    assert by_name["tool_result"] == {
        "id": "call_0",
        "name": "crm__lookup_order",
        "isError": False,
        "content": "Order A-42 shipped on 3 May",
    }
    assert "".join(d["text"] for n, d in events if n == "delta") == "Your order: Order A-42 shipped on 3 May."
    assert [c.arguments for c in toolset.calls] == [{"id": "A-42"}]
    followup = fake_llm.requests[1].body["messages"]
    assert followup[-1] == {
        "role": "tool",
        "tool_call_id": "call_0",
        "content": "Order A-42 shipped on 3 May",
    }
    usage = by_name["usage"]
    assert (usage["inputTokens"], usage["outputTokens"]) == (22, 14), "summed over both LLM calls"
    [event] = await events_of("chat.message")
    assert event["payload"]["toolCalls"] == 1


@pytest.mark.parametrize(
    "settings_changes",
    [{"chat_max_tool_steps": 2, "llm_max_retries": 0, "llm_timeout_seconds": 2.0}],
)
async def test_the_tool_loop_stops_at_the_step_limit(
    client: httpx.AsyncClient, fake_llm: FakeLLM, knowledge: Knowledge, toolset: StubToolset
) -> None:
    owner = await signed_in(client, "builder")
    project = await fake_project(owner, fake_llm, mcp_servers=["crm"])
    again = Reply(text="", tool_calls=[("crm__lookup_order", {"id": "again"})])
    fake_llm.script(again, again, Reply(text="Here is what I found.", tool_calls=[("crm__lookup_order", {})]))

    response = await ask(client, owner, project, "Loop forever")

    assert response.status_code == 200, response.text
    assert len(toolset.calls) == 2
    assert len(fake_llm.requests) == 3
    assert [r.body["tool_choice"] for r in fake_llm.requests] == ["auto", "auto", "none"]
    metadata = response.json()["message"]["metadata"]
    assert len(metadata["toolCalls"]) == 2
    assert metadata["stoppedAtToolStepLimit"] is True
    assert response.json()["message"]["content"] == "Here is what I found."


async def test_every_answer_records_a_chat_message_event_with_usage_and_cost(
    client: httpx.AsyncClient, fake_llm: FakeLLM, knowledge: Knowledge
) -> None:
    owner = await signed_in(client, "builder")
    project = await fake_project(owner, fake_llm)
    fake_llm.script(Reply(text="Hello.", input_tokens=1200, output_tokens=300))

    response = await ask(client, owner, project, "Hi")

    answer = response.json()
    [event] = await events_of("chat.message")
    payload = event["payload"]
    async with sessionmaker()() as db:
        key = (await db.execute(select(LlmModel.key))).scalar_one()
    assert payload == {
        "projectId": str(project),
        "chatId": answer["conversationId"],
        "messageId": answer["message"]["id"],
        "channel": "studio",
        "widgetId": None,
        "visitorId": None,
        "customerId": None,
        "userId": str(owner.id),
        "provider": "fake",
        "model": key,
        "inputTokens": 1200,
        "outputTokens": 300,
        "latencyMs": payload["latencyMs"],
        "firstTokenMs": payload["firstTokenMs"],
        "toolCalls": 0,
        # 1200 * 0.15 / 1e6 + 300 * 0.60 / 1e6 = 0.00018 + 0.00018
        "costUsd": "0.000360",
    }
    assert isinstance(payload["latencyMs"], int)
    assert isinstance(payload["firstTokenMs"], int)
    assert payload["latencyMs"] >= payload["firstTokenMs"]
    assert event["actor_id"] == owner.id
    assert event["subject_id"] == answer["conversationId"]


async def test_a_failing_provider_gives_a_clear_error_and_keeps_the_question(
    client: httpx.AsyncClient, fake_llm: FakeLLM, knowledge: Knowledge
) -> None:
    owner = await signed_in(client, "builder")
    project = await fake_project(owner, fake_llm)
    fake_llm.script(Fail(503, times=2, message="overloaded"))

    response = await ask(client, owner, project, "Are you there?")

    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "llm_provider_error"
    assert "overloaded" in error["message"]
    conversation = error["details"]["conversationId"]
    chat = (await client.get(f"/api/projects/{project}/chats/{conversation}", headers=owner.headers)).json()
    question, failed = chat["messages"]
    assert (question["role"], question["content"]) == ("user", "Are you there?")
    assert (failed["role"], failed["content"]) == ("assistant", "")
    assert failed["metadata"]["error"]["code"] == "llm_provider_error"
    assert await events_of("chat.message") == []

    # The failed answer is not history: the next turn sends the question only.
    fake_llm.script(Reply(text="Yes."))
    retried = await ask(client, owner, project, "Are you there now?", conversation)
    assert retried.status_code == 200
    assert [m["role"] for m in fake_llm.requests[-1].body["messages"]] == ["system", "user", "user"]


@pytest.mark.parametrize(
    "settings_changes", [{"llm_timeout_seconds": 0.3, "llm_max_retries": 0, "llm_retry_backoff_seconds": 0}]
)
async def test_a_silent_provider_ends_the_stream_with_an_error_event(
    client: httpx.AsyncClient, fake_llm: FakeLLM, knowledge: Knowledge
) -> None:
    owner = await signed_in(client, "builder")
    project = await fake_project(owner, fake_llm)
    fake_llm.script(Hang(after_chunks=1))

    status, events = await stream_chat(
        client, f"/api/projects/{project}/chat", {"message": "Hello?"}, owner.headers
    )

    assert status == 200
    names = [name for name, _ in events]
    assert names[0] == "conversation"
    assert names[-1] == "error"
    assert "done" not in names
    assert events[-1][1]["code"] == "llm_timeout"
    assert await stored_messages() == [("user", "Hello?"), ("assistant", "")]


async def test_a_switched_off_model_is_a_conflict_and_stores_nothing(
    client: httpx.AsyncClient, fake_llm: FakeLLM, knowledge: Knowledge
) -> None:
    owner = await signed_in(client, "builder")
    project = await fake_project(owner, fake_llm)
    async with sessionmaker()() as db:
        model = (await db.execute(select(LlmModel))).scalar_one()
        model.is_active = False
        await db.commit()

    response = await ask(client, owner, project, "Hi")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "llm_model_unavailable"
    assert await stored_messages() == []


async def test_bad_chat_input_is_refused_and_stores_nothing(
    client: httpx.AsyncClient, knowledge: Knowledge
) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner, name="P")
    other = await create_project(owner, name="Other")
    elsewhere = (await ask(client, owner, other, "In the other project")).json()["conversationId"]
    before = await stored_messages()

    cases = {
        "empty": ({"message": "   "}, 422),
        "too long": ({"message": "x" * 20_001}, 422),
        "not a string": ({"message": 5}, 422),
        "unknown field": ({"message": "hi", "model": "gpt"}, 422),
        "bad conversation id": ({"message": "hi", "conversationId": "nope"}, 422),
        "unknown conversation": ({"message": "hi", "conversationId": str(uuid4())}, 404),
        "another project's conversation": ({"message": "hi", "conversationId": elsewhere}, 404),
    }
    for case, (body, status) in cases.items():
        response = await client.post(f"/api/projects/{project}/chat", json=body, headers=owner.headers)
        assert response.status_code == status, (case, response.text)
        assert set(response.json()) == {"error"}
    assert await stored_messages() == before


async def test_conversations_are_listed_read_and_deleted(
    client: httpx.AsyncClient, knowledge: Knowledge
) -> None:
    owner = await signed_in(client, "builder")
    project = await create_project(owner, name="P")
    first = (await ask(client, owner, project, "  First   question\nabout refunds  ")).json()[
        "conversationId"
    ]
    await ask(client, owner, project, "Follow-up", first)
    second = (await ask(client, owner, project, "x" * 200)).json()["conversationId"]
    path = f"/api/projects/{project}/chats"

    listed = (await client.get(path, headers=owner.headers)).json()
    paged = (await client.get(f"{path}?limit=1&page=2", headers=owner.headers)).json()
    by_creation = (await client.get(f"{path}?sort=createdAt", headers=owner.headers)).json()

    assert [(c["id"], c["messageCount"]) for c in listed["items"]] == [(second, 2), (first, 4)]
    assert listed["items"][1]["title"] == "First question about refunds"
    assert len(listed["items"][0]["title"]) == 80
    assert set(listed["items"][0]) == {
        "id",
        "projectId",
        "title",
        "channel",
        "messageCount",
        "createdAt",
        "updatedAt",
    }
    assert listed["pagination"] == {"total": 2, "page": 1, "limit": 20}
    assert [c["id"] for c in paged["items"]] == [first]
    assert [c["id"] for c in by_creation["items"]] == [first, second]
    chat = (await client.get(f"{path}/{first}", headers=owner.headers)).json()
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant", "user", "assistant"]
    assert (chat["projectId"], chat["userId"], chat["channel"]) == (str(project), str(owner.id), "studio")

    deleted = await client.delete(f"{path}/{first}", headers=owner.headers)

    assert deleted.status_code == 204
    assert (await client.get(f"{path}/{first}", headers=owner.headers)).status_code == 404
    assert (await client.delete(f"{path}/{first}", headers=owner.headers)).status_code == 404
    assert [c["id"] for c in (await client.get(path, headers=owner.headers)).json()["items"]] == [second]
    async with sessionmaker()() as db:
        left = (await db.execute(select(func.count()).select_from(ChatMessage))).scalar_one()
        chats = (await db.execute(select(func.count()).select_from(ProjectChat))).scalar_one()
    assert (left, chats) == (2, 1)
