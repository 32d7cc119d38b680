"""Helpers shared by the LLM and chat tests: the fake LLM server as fixtures, configured models,
and a reader of Server-Sent Events."""

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from app.core.config import get_settings
from app.core.db import commit, sessionmaker
from app.core.runtime import runtime
from app.llm.schemas import LlmModelCreate, LlmProviderCreate
from app.llm.service import llm_service
from tests.fakes.llm_server import FakeLLM


@pytest.fixture(scope="session")
def fake_llm_server() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


@pytest.fixture
def fake_llm(fake_llm_server: FakeLLM) -> Iterator[FakeLLM]:
    """The session's fake LLM, with no script and no recorded requests."""
    fake_llm_server.reset()
    yield fake_llm_server
    fake_llm_server.reset()


async def configure_model(
    key: str,
    *,
    base_url: str = "http://127.0.0.1:9/v1",
    api_key: str | None = "sk-fake-llm-key-0123456789",
    kind: str = "openai_compatible",
    model: str | None = None,
    input_price: str | None = None,
    output_price: str | None = None,
    provider_name: str | None = None,
) -> str:
    """An active provider (one per model unless ``provider_name`` is shared) and model ``key``,
    written through the real service; returns the key."""
    try:
        settings = runtime().settings
    except RuntimeError:
        settings = get_settings()
    async with sessionmaker()() as db:
        name = provider_name or f"provider-for-{key}"
        from app.llm.repository import llm_repository

        provider = await llm_repository.provider_named(db, name)
        if provider is None:
            provider = await llm_service.create_provider(
                db,
                settings,
                LlmProviderCreate(name=name, kind=kind, base_url=base_url, api_key=api_key),  # type: ignore[arg-type]
            )
        await llm_service.create_model(
            db,
            LlmModelCreate(
                key=key,
                provider_id=provider.id,
                model=model or key.rsplit("/", 1)[-1],
                input_price_per_million_tokens=None if input_price is None else Decimal(input_price),
                output_price_per_million_tokens=None if output_price is None else Decimal(output_price),
            ),
        )
        await commit(db)
    return key


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event, parsed data) of a streamed response, as a browser's EventSource would see them."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, orjson.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").removeprefix(" "))


async def stream_chat(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, list[tuple[str, Any]]]:
    async with client.stream(
        "POST", path, json=body, headers={**headers, "Accept": "text/event-stream"}
    ) as response:
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response.status_code, [e async for e in sse_events(response)]
        await response.aread()
        return response.status_code, [("json", response.json())]
