"""Chat tests run against the fake LLM server, with the knowledge retriever and the MCP toolset
stubbed at their interfaces (their domains test the real ones)."""

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import pytest

from app.chat import service as chat_service_module
from app.llm.types import Citation, ToolCall, ToolResult, ToolSpec
from tests.llm.helpers import fake_llm, fake_llm_server

__all__ = ["fake_llm", "fake_llm_server"]

KNOWLEDGE = [
    Citation(
        chunk_id="chunk-1",
        file_id="file-1",
        file_name="refunds.md",
        ordinal=2,
        text="Refunds are accepted within 30 days of delivery. Shipping costs are not refunded.",
        score=0.91,
    ),
    Citation(
        chunk_id="chunk-2",
        file_id="file-2",
        file_name="shipping.md",
        ordinal=0,
        text="Orders leave the warehouse within two working days.",
        score=0.55,
    ),
]

LOOKUP = ToolSpec(
    name="crm__lookup_order",
    description="Look an order up by id",
    parameters={"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
)


@pytest.fixture
def settings_changes() -> dict[str, Any]:
    """Short LLM waits for every chat test (a failing provider must not slow the suite)."""
    return {"llm_timeout_seconds": 2.0, "llm_max_retries": 1, "llm_retry_backoff_seconds": 0.01}


@dataclass
class Knowledge:
    citations: list[Citation] = field(default_factory=lambda: list(KNOWLEDGE))
    queries: list[tuple[UUID, str, int]] = field(default_factory=list)


@pytest.fixture
def knowledge() -> Iterator[Knowledge]:
    """What ``retrieve`` returns for every question (and the questions it was asked)."""
    stub = Knowledge()

    async def retrieve(db: Any, project_id: UUID, query: str, *, limit: int) -> list[Citation]:
        stub.queries.append((project_id, query, limit))
        return stub.citations[:limit]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chat_service_module, "retrieve", retrieve)
        yield stub


@dataclass
class StubToolset:
    tools: list[ToolSpec] = field(default_factory=lambda: [LOOKUP])
    calls: list[ToolCall] = field(default_factory=list)
    opened_with: list[list[str]] = field(default_factory=list)

    async def call(self, call: ToolCall) -> ToolResult:
        self.calls.append(call)
        return ToolResult(
            call_id=call.id, name=call.name, content=f"Order {call.arguments.get('id')} shipped on 3 May"
        )


@pytest.fixture
def toolset() -> Iterator[StubToolset]:
    """The project's MCP tools: one order lookup; the calls it got are recorded. (Its "clients"
    are the project's MCP server ids as they are.)"""
    stub = StubToolset()

    async def toolset_clients(db: Any, settings: Any, client_ids: Sequence[str]) -> list[str]:
        return list(client_ids)

    @asynccontextmanager
    async def connect_toolset(settings: Any, clients: Sequence[str]) -> AsyncIterator[StubToolset]:
        stub.opened_with.append(list(clients))
        yield stub

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chat_service_module, "toolset_clients", toolset_clients)
        patch.setattr(chat_service_module, "connect_toolset", connect_toolset)
        yield stub
