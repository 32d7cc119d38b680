"""The builder studio end to end, with nothing stubbed: an administrator configures an
OpenAI-compatible provider (the local fake LLM over HTTP) and an MCP client (a real MCP server
over streamable HTTP); a builder uploads a PDF, the worker processes it, and a streamed chat
answer retrieves from the PDF, calls the MCP tool, is stored and emits ``chat.message``."""

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from tests.factories import Account, create_project, events_of, signed_in
from tests.fakes.llm_server import FakeLLM, Reply, last_tool_result
from tests.fakes.mcp_servers import McpHttpServer
from tests.files.documents import make_pdf
from tests.files.steps import file_of, run_worker, upload

HANDBOOK = (
    "Harbour Lamps customer handbook.\n\n"
    "Opening hours: the showroom on Quay Street opens from nine to five, Monday to Saturday.\n\n"
    "Warranty: every Harbour lamp carries a seven year warranty on its brass body and a two year "
    "warranty on the electrical parts. Claims need the order number.\n\n"
    "Delivery: parcels leave the workshop within three working days and travel with a tracked courier."
)


@pytest.fixture
def settings_changes() -> dict[str, Any]:
    # The MCP server and the fake LLM listen on 127.0.0.1: SSRF protection must let them in.
    return {"mcp_allow_private_networks": True, "llm_timeout_seconds": 10.0, "llm_max_retries": 0}


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


@pytest.fixture
def orders_server() -> Iterator[McpHttpServer]:
    with McpHttpServer("streamable_http", name="orders") as server:
        yield server


def sse_events(body: str) -> list[tuple[str, Any]]:
    events = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], orjson.loads(fields["data"])))
    return events


async def configure_platform(
    client: httpx.AsyncClient, admin: Account, llm: FakeLLM, server: McpHttpServer
) -> str:
    """The administrator's part: a provider, a priced model, an active MCP client."""
    provider = await client.post(
        "/api/llm/providers",
        json={
            "name": "fake-openai",
            "kind": "openai_compatible",
            "baseUrl": llm.openai_base_url,
            "apiKey": llm.api_key,
        },
        headers=admin.headers,
    )
    assert provider.status_code == 201, provider.text
    model = await client.post(
        "/api/llm/models",
        json={
            "key": "fake/gpt-test",
            "providerId": provider.json()["id"],
            "model": "gpt-test",
            "displayName": "GPT test",
            "inputPricePerMillionTokens": "2.50",
            "outputPricePerMillionTokens": "10.00",
        },
        headers=admin.headers,
    )
    assert model.status_code == 201, model.text
    mcp = await client.post(
        "/api/mcp-clients",
        json={"name": "Orders", "connectionType": "streamable_http", "connectionString": server.url},
        headers=admin.headers,
    )
    assert mcp.status_code == 201, mcp.text
    tested = await client.post(f"/api/mcp-clients/{mcp.json()['id']}/test-connection", headers=admin.headers)
    assert tested.json()["status"] == "connected", tested.text
    return str(mcp.json()["id"])


async def test_a_streamed_answer_retrieves_from_a_pdf_calls_an_mcp_tool_and_is_stored_and_metered(
    client: httpx.AsyncClient, settings, llm: FakeLLM, orders_server: McpHttpServer
) -> None:
    admin = await signed_in(client, "super_admin")
    builder = await signed_in(client, "builder")
    mcp_id = await configure_platform(client, admin, llm, orders_server)

    project = await create_project(builder, name="Harbour helper", prompt="You answer for Harbour Lamps.")
    attached = await client.put(
        f"/api/projects/{project}",
        json={"llm": "fake/gpt-test", "mcpServers": [mcp_id]},
        headers=builder.headers,
    )
    assert attached.status_code == 200, attached.text

    uploaded = await upload(client, builder, project, "handbook.pdf", make_pdf(HANDBOOK))
    await run_worker(settings)
    assert (await file_of(client, builder, uploaded["id"]))["status"] == "ready"

    llm.script(
        Reply(
            text="",
            tool_calls=[("orders__lookup_order", {"order_id": "A-1001"})],
            input_tokens=400,
            output_tokens=20,
        ),
        Reply(text=lambda body: f"Your order: {last_tool_result(body)}", input_tokens=600, output_tokens=40),
    )
    response = await client.post(
        f"/api/projects/{project}/chat",
        json={"message": "How long is the warranty on the brass body, and where is order A-1001?"},
        headers={**builder.headers, "Accept": "text/event-stream"},
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    kinds = [kind for kind, _ in events]
    assert kinds[:2] == ["conversation", "citations"]
    assert kinds[-2:] == ["usage", "done"]
    # Retrieval: the PDF's warranty passage is cited and was in the prompt the LLM got.
    citations = events[1][1]
    assert citations[0]["fileId"] == uploaded["id"]
    assert "seven year warranty" in citations[0]["text"]
    first_prompt = llm.requests[0].body
    assert "seven year warranty" in first_prompt["messages"][0]["content"]
    assert "You answer for Harbour Lamps." in first_prompt["messages"][0]["content"]
    assert "orders__lookup_order" in {tool["function"]["name"] for tool in first_prompt["tools"]}
    # The MCP tool really ran on the MCP server, and its result went back to the model.
    [(_, call)] = [e for e in events if e[0] == "tool_call"]
    [(_, result)] = [e for e in events if e[0] == "tool_result"]
    assert call["arguments"] == {"order_id": "A-1001"}
    assert not result["isError"]
    assert "shipped" in result["content"]
    assert "shipped" in last_tool_result(llm.requests[1].body)
    # The answer streamed in several deltas.
    deltas = [data["text"] for kind, data in events if kind == "delta"]
    assert len(deltas) > 1
    answer = "".join(deltas)
    assert answer.startswith("Your order: ")
    assert "shipped" in answer

    usage = dict(events[-2][1])
    assert (usage["inputTokens"], usage["outputTokens"]) == (1000, 60)
    assert Decimal(usage["costUsd"]) == Decimal("0.003100")  # 1000 x 2.50 + 60 x 10.00 per million

    # The conversation is stored and reads back with both messages.
    conversation_id = events[0][1]["conversationId"]
    stored = await client.get(f"/api/projects/{project}/chats/{conversation_id}", headers=builder.headers)
    messages = stored.json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == answer
    assert messages[1]["metadata"]["citations"][0]["fileId"] == uploaded["id"]

    # And metered for the data platform: one chat.message with the turn's totals.
    [event] = await events_of("chat.message")
    payload = event["payload"]
    assert payload["projectId"] == str(project)
    assert payload["chatId"] == conversation_id
    assert payload["messageId"] == events[-1][1]["messageId"]
    assert (payload["channel"], payload["model"], payload["provider"]) == (
        "studio",
        "fake/gpt-test",
        "fake-openai",
    )
    assert (payload["inputTokens"], payload["outputTokens"], payload["toolCalls"]) == (1000, 60, 1)
    assert Decimal(payload["costUsd"]) == Decimal("0.003100")
