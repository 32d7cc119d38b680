"""What a turn survives: provider errors while real MCP tools are connected, MCP servers slow to
connect, hostile text from tools and models, answers that cannot be stored, clients that go away
mid-answer, a server stopping mid-answer, and two questions at once in one conversation."""

import asyncio
import inspect
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import select, update

from app.chat import service as chat_service_module
from app.chat.service import AnswerFailed, Asker, ChatProject, chat_service
from app.core.db import commit, get_engine, sessionmaker
from app.core.runtime import runtime
from app.llm.types import TextDelta
from app.mcp.toolset import cap
from app.models import ChatChannel, ChatMessage, Project
from tests.chat.steps import ask, chat_project
from tests.factories import create_mcp_client, events_of, signed_in
from tests.fakes.llm_server import Fail, FakeLLM, Reply
from tests.fakes.mcp_servers import HangingHttpServer, McpHttpServer
from tests.llm.helpers import sse_events, stream_chat
from tests.llm.paced_llm import Gated, Now, PacedLLM

WAIT_SECONDS = 15.0


@pytest.fixture
def settings_changes() -> dict[str, Any]:
    # The MCP servers and the LLM fakes listen on 127.0.0.1.
    return {
        "mcp_allow_private_networks": True,
        "mcp_call_timeout_seconds": 5.0,
        "llm_timeout_seconds": 5.0,
        "llm_max_retries": 1,
        "llm_retry_backoff_seconds": 0.01,
    }


@pytest.fixture
def orders_server() -> Iterator[McpHttpServer]:
    with McpHttpServer("streamable_http", name="orders") as server:
        yield server


@pytest.fixture
def paced() -> Iterator[PacedLLM]:
    with PacedLLM() as llm:
        yield llm


async def stored_messages() -> list[ChatMessage]:
    async with sessionmaker()() as db:
        return list((await db.execute(select(ChatMessage).order_by(ChatMessage.created_at))).scalars())


async def until(check: Callable[[], Any], what: str) -> Any:
    """Wait for ``check()`` (awaited when it is a coroutine) to be truthy: the answer is written
    by a task of its own, after the response may be gone."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """The running test app behind a real HTTP server (a real client can hang up on it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="critical", access_log=False))
    # _serve, not serve: that one would take over the test process's signal handlers.
    task = asyncio.create_task(server._serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", server
    finally:
        server.should_exit = True
        await task


# --- finding: provider errors through the MCP task group ----------------------------------------


async def test_a_rate_limited_provider_is_a_502_while_real_mcp_tools_are_connected(
    client: httpx.AsyncClient, fake_llm: FakeLLM, orders_server: McpHttpServer
) -> None:
    owner = await signed_in(client, "builder")
    orders = await create_mcp_client("Orders", connection_string=orders_server.url)
    project = await chat_project(owner, fake_llm.openai_base_url, mcp_servers=[orders])
    fake_llm.script(Fail(429, retry_after=0, times=2))

    response = await ask(client, owner, project, "Hi")

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "llm_rate_limited"
    assert "orders__lookup_order" in {t["function"]["name"] for t in fake_llm.requests[0].body["tools"]}
    assert [m.metadata_["error"]["code"] for m in await stored_messages() if m.role == "assistant"] == [
        "llm_rate_limited"
    ]
    assert await events_of("chat.message") == []


# --- finding: no database connection held while MCP servers connect ----------------------------


@pytest.mark.parametrize(
    "settings_changes",
    [{"mcp_allow_private_networks": True, "mcp_call_timeout_seconds": 1.0, "llm_max_retries": 0}],
)
async def test_no_database_connection_is_held_while_mcp_servers_connect(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    owner = await signed_in(client, "builder")
    with HangingHttpServer() as hanging:
        slow = await create_mcp_client("Slow", connection_string=hanging.url)
        project = await chat_project(owner, fake_llm.openai_base_url, mcp_servers=[slow])
        fake_llm.script(Reply(text="Answered without tools."))

        asking = asyncio.create_task(ask(client, owner, project, "Hi"))
        await until(lambda: hanging.requests, "the MCP server was called")
        held = get_engine().pool.checkedout()
        response = await asking

    assert held == 0, "a pooled connection was checked out while the MCP server kept us waiting"
    assert response.status_code == 200, response.text
    assert response.json()["message"]["content"] == "Answered without tools."
    assert "tools" not in fake_llm.requests[0].body, "the client that never answered was skipped"


# --- finding: hostile text ----------------------------------------------------------------------


def test_tool_output_loses_its_nul_characters_before_it_is_measured_and_cut() -> None:
    assert cap("A\x00B", 100) == "AB"
    assert cap("\x00" * 500 + "short", 100) == "short"


async def test_nul_characters_from_the_model_and_a_tool_are_dropped_and_the_answer_stored(
    client: httpx.AsyncClient, fake_llm: FakeLLM, orders_server: McpHttpServer
) -> None:
    owner = await signed_in(client, "builder")
    orders = await create_mcp_client("Orders", connection_string=orders_server.url)
    project = await chat_project(owner, fake_llm.openai_base_url, mcp_servers=[orders])
    # The real MCP server echoes the order id it was given: the NUL comes back in its output.
    fake_llm.script(
        Reply(text="", tool_calls=[("orders__lookup_order", {"order_id": "A-\u00001001"})]),
        Reply(text="Not\u0000 found."),
    )

    response = await ask(client, owner, project, "Where is A-1001?")

    assert response.status_code == 200, response.text
    message = response.json()["message"]
    assert message["content"] == "Not found."
    [call] = message["metadata"]["toolCalls"]
    assert call["arguments"] == {"order_id": "A-1001"}
    assert call["content"] == "No order A-1001"
    assert fake_llm.requests[1].body["messages"][-1]["content"] == "No order A-1001", "no NUL for the model"
    assert [m.content for m in await stored_messages()] == ["Where is A-1001?", "Not found."]
    assert len(await events_of("chat.message")) == 1


async def test_a_question_with_a_nul_character_is_refused_and_stores_nothing(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    owner = await signed_in(client, "builder")
    project = await chat_project(owner, fake_llm.openai_base_url)

    response = await ask(client, owner, project, "Hello\u0000")

    assert response.status_code == 422, response.text
    assert await stored_messages() == []
    assert fake_llm.requests == []


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "sse"])
async def test_an_answer_that_cannot_be_stored_is_a_clear_error_and_the_question_is_kept(
    client: httpx.AsyncClient, fake_llm: FakeLLM, streamed: bool
) -> None:
    owner = await signed_in(client, "builder")
    project = await chat_project(owner, fake_llm.openai_base_url)
    fake_llm.script(Reply(text="An answer the outbox will not take."))

    async def outbox_down(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the outbox is down")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chat_service_module, "record_event", outbox_down)
        if streamed:
            status, events = await stream_chat(
                client, f"/api/projects/{project}/chat", {"message": "Hi"}, owner.headers
            )
            assert status == 200
            assert events[-1] == (
                "error",
                {"code": "chat_save_failed", "message": "The answer could not be stored; try again"},
            )
        else:
            response = await ask(client, owner, project, "Hi")
            assert response.status_code == 500, response.text
            assert response.json()["error"]["code"] == "chat_save_failed"
            assert response.json()["error"]["details"]["conversationId"]

    question, failed = await stored_messages()
    assert (question.role, question.content) == ("user", "Hi")
    assert (failed.role, failed.content, failed.metadata_["error"]["code"]) == (
        "assistant",
        "",
        "chat_save_failed",
    )
    assert await events_of("chat.message") == []


# --- finding: the answer outlives its client -----------------------------------------------------


async def test_a_client_that_hangs_up_mid_answer_still_gets_the_answer_stored_and_metered(
    app: FastAPI, client: httpx.AsyncClient, paced: PacedLLM
) -> None:
    owner = await signed_in(client, "builder")
    project = await chat_project(owner, paced.openai_base_url)
    paced.script(Gated(["Thirty ", "days, ", "shipping excluded."], input_tokens=40, output_tokens=12))

    async with served(app) as (url, server), httpx.AsyncClient(base_url=url, timeout=WAIT_SECONDS) as browser:
        async with browser.stream(
            "POST",
            f"/api/projects/{project}/chat",
            json={"message": "Refund window?"},
            headers={**owner.headers, "Accept": "text/event-stream"},
        ) as response:
            async for name, data in sse_events(response):
                if name == "delta":
                    assert data == {"text": "Thirty "}
                    break  # hang up after the first piece of the answer
        await until(lambda: not server.server_state.connections, "the server saw the hang-up")
        paced.release()
        [event] = await until(lambda: events_of("chat.message"), "the answer was metered")

    question, answer = await stored_messages()
    assert (question.content, answer.role, answer.content) == (
        "Refund window?",
        "assistant",
        "Thirty days, shipping excluded.",
    )
    assert (
        event["payload"]["messageId"],
        event["payload"]["inputTokens"],
        event["payload"]["outputTokens"],
    ) == (
        str(answer.id),
        40,
        12,
    )


async def test_an_answer_cut_short_by_the_server_stopping_keeps_what_was_said_and_its_usage(
    client: httpx.AsyncClient, paced: PacedLLM
) -> None:
    owner = await signed_in(client, "builder")
    project = await chat_project(owner, paced.openai_base_url)
    paced.script(Gated(["Thirty days ", "and more."]))
    settings = runtime().settings
    async with sessionmaker()() as db:
        turn = await chat_service.prepare_turn(
            db,
            settings,
            ChatProject(
                id=project, prompt="Be brief.", llm=(await db.get(Project, project)).llm, mcp_servers=[]
            ),  # type: ignore[union-attr]
            Asker(channel=ChatChannel.STUDIO, user_id=owner.id),
            "Refund window?",
            conversation_id=None,
        )
        await commit(db)

    run = await chat_service.start_answer(turn)
    events = run.events()
    assert await anext(events) == TextDelta("Thirty days ")
    assert run.task is not None
    run.task.cancel()  # what stopping the event loop does to a task
    final = await anext(events)

    assert isinstance(final, AnswerFailed)
    assert final.code == "chat_interrupted"
    question, partial = await stored_messages()
    assert (question.content, partial.content, partial.metadata_["interrupted"]) == (
        "Refund window?",
        "Thirty days ",
        True,
    )
    [event] = await events_of("chat.message")
    usage = partial.metadata_["usage"]
    assert (event["payload"]["outputTokens"], usage["outputTokens"]) == (2, 2), "two words said"
    assert event["payload"]["inputTokens"] == usage["inputTokens"] > 0, "the prompt, estimated"
    paced.release()


# --- one question at a time per conversation ----------------------------------------------------


async def test_a_second_question_while_the_first_is_answered_is_refused_with_chat_busy(
    client: httpx.AsyncClient, paced: PacedLLM
) -> None:
    owner = await signed_in(client, "builder")
    project = await chat_project(owner, paced.openai_base_url)
    paced.script(Now("Hello."), Gated(["Thirty ", "days."]))
    conversation = (await ask(client, owner, project, "Hi")).json()["conversationId"]

    first = asyncio.create_task(ask(client, owner, project, "Refund window?", conversation))
    await paced.wait_for_requests(2)
    second = await ask(client, owner, project, "And shipping?", conversation)
    paced.release()
    answered = await first
    third = await ask(client, owner, project, "And shipping?", conversation)

    assert second.status_code == 409, second.text
    assert second.json()["error"]["code"] == "chat_busy"
    assert second.json()["error"]["details"] == {"conversationId": conversation}
    assert answered.status_code == 200, answered.text
    assert answered.json()["message"]["content"] == "Thirty days."
    assert third.status_code == 200, third.text
    assert [(m.role, m.content) for m in await stored_messages()] == [
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("user", "Refund window?"),
        ("assistant", "Thirty days."),
        ("user", "And shipping?"),
        ("assistant", "Hello."),
    ]


async def test_a_question_left_unanswered_by_a_dead_process_does_not_block_the_conversation_for_ever(
    client: httpx.AsyncClient, paced: PacedLLM
) -> None:
    owner = await signed_in(client, "builder")
    project = await chat_project(owner, paced.openai_base_url)
    conversation = (await ask(client, owner, project, "Hi")).json()["conversationId"]
    async with sessionmaker()() as db:  # a question whose answering process was killed
        db.add(ChatMessage(chat_id=UUID(conversation), role="user", content="Lost?", metadata_={}))
        await db.commit()
    busy = await ask(client, owner, project, "Still there?", conversation)
    async with sessionmaker()() as db:  # ... long ago
        long_ago = datetime.now(UTC) - timedelta(hours=6)
        await db.execute(
            update(ChatMessage).where(ChatMessage.content == "Lost?").values(created_at=long_ago)
        )
        await db.commit()

    later = await ask(client, owner, project, "Still there?", conversation)

    assert busy.status_code == 409
    assert later.status_code == 200, later.text


# --- history a model accepts ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["anthropic", "openai_compatible"])
async def test_an_empty_answer_is_not_sent_back_as_history(
    client: httpx.AsyncClient, fake_llm: FakeLLM, kind: str
) -> None:
    owner = await signed_in(client, "builder")
    base_url = fake_llm.base_url if kind == "anthropic" else fake_llm.openai_base_url
    project = await chat_project(owner, base_url, kind=kind)
    fake_llm.script(Reply(text=""), Reply(text="Thirty days."))
    first = await ask(client, owner, project, "Refund window?")
    assert (first.status_code, first.json()["message"]["content"]) == (200, "")

    second = await ask(client, owner, project, "Refund window, please?", first.json()["conversationId"])

    assert second.status_code == 200, second.text
    assert [m for m in fake_llm.requests[1].body["messages"] if m["role"] != "system"] == [
        {"role": "user", "content": "Refund window?"},
        {"role": "user", "content": "Refund window, please?"},
    ]


@pytest.mark.parametrize("settings_changes", [{"chat_history_messages": 3}])
async def test_the_history_window_starts_with_a_question(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    owner = await signed_in(client, "builder")
    project = await chat_project(owner, fake_llm.openai_base_url)
    fake_llm.script(Reply(text="a0"), Reply(text="a1"), Reply(text="a2"))
    conversation = None
    for n in range(3):
        conversation = (await ask(client, owner, project, f"q{n}", conversation)).json()["conversationId"]

    # The last three earlier messages are a0, q1, a1: the window drops the answer it would start with.
    assert [m["content"] for m in fake_llm.requests[-1].body["messages"][1:]] == ["q1", "a1", "q2"]
