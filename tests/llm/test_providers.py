"""The provider adapters against the fake LLM server over real HTTP: streaming, tool calls
assembled from deltas, usage, retries with backoff, timeouts and clear errors."""

import time
from collections.abc import Callable
from typing import Any

import pytest

from app.core.config import Settings
from app.llm.anthropic import AnthropicProvider
from app.llm.errors import ProviderError
from app.llm.openai_compatible import OpenAICompatibleProvider
from app.llm.providers import ChatProvider
from app.llm.types import (
    Finish,
    Message,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    ToolSpec,
    Usage,
)
from tests.fakes.llm_server import Fail, FakeLLM, Garbage, Hang, Reply, last_tool_result

SEARCH = ToolSpec(
    name="crm__search",
    description="Search the CRM",
    parameters={"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
)
QUESTION = [Message("system", "You are terse."), Message("user", "What is our refund window?")]


@pytest.fixture
def quick(make_settings: Callable[..., Settings]) -> Settings:
    """Settings with short waits: tests never sleep for real backoff."""
    return make_settings(llm_timeout_seconds=0.5, llm_max_retries=2, llm_retry_backoff_seconds=0.01)


def openai(fake: FakeLLM, settings: Settings, api_key: str | None = None) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider("fake-openai", fake.openai_base_url, api_key or fake.api_key, settings)


def anthropic(fake: FakeLLM, settings: Settings, api_key: str | None = None) -> AnthropicProvider:
    return AnthropicProvider("fake-anthropic", fake.base_url, api_key or fake.api_key, settings)


async def collect(
    provider: ChatProvider, messages: list[Message], tools: list[ToolSpec] = ()
) -> list[StreamEvent]:  # type: ignore[assignment]
    return [event async for event in provider.stream("m-1", list(messages), list(tools))]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize("adapter", [openai, anthropic])
async def test_text_streams_in_pieces_then_usage_then_finish(
    fake_llm: FakeLLM, quick: Settings, adapter: Callable[..., ChatProvider]
) -> None:
    fake_llm.script(Reply(text="Thirty days from delivery.", input_tokens=42, output_tokens=6, chunk_chars=4))

    events = await collect(adapter(fake_llm, quick), QUESTION)

    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 1, "the answer must arrive in pieces, not at the end"
    assert text_of(events) == "Thirty days from delivery."
    assert events[-2:] == [Usage(42, 6), Finish("stop")]


async def test_openai_request_carries_the_conversation_tools_and_asks_for_usage(
    fake_llm: FakeLLM, quick: Settings
) -> None:
    await collect(openai(fake_llm, quick), QUESTION, [SEARCH])

    [request] = fake_llm.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {fake_llm.api_key}"
    body = request.body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["model"] == "m-1"
    assert body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is our refund window?"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "crm__search",
                "description": "Search the CRM",
                "parameters": SEARCH.parameters,
            },
        }
    ]


async def test_anthropic_request_sends_the_system_prompt_apart_and_tools_in_its_format(
    fake_llm: FakeLLM, quick: Settings
) -> None:
    await collect(anthropic(fake_llm, quick), QUESTION, [SEARCH])

    [request] = fake_llm.requests
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == fake_llm.api_key
    assert request.headers["anthropic-version"] == "2023-06-01"
    body = request.body
    assert body["system"] == "You are terse."
    assert body["messages"] == [{"role": "user", "content": "What is our refund window?"}]
    assert body["tools"] == [
        {"name": "crm__search", "description": "Search the CRM", "input_schema": SEARCH.parameters}
    ]
    assert body["stream"] is True
    assert body["max_tokens"] == quick.llm_max_output_tokens


@pytest.mark.parametrize("adapter", [openai, anthropic])
async def test_tool_calls_are_assembled_from_argument_deltas(
    fake_llm: FakeLLM, quick: Settings, adapter: Callable[..., ChatProvider]
) -> None:
    arguments = {"q": "refund policy for digital goods", "limit": 3, "filters": {"lang": ["en", "fr"]}}
    fake_llm.script(
        Reply(text="", tool_calls=[("crm__search", arguments), ("crm__count", {})], argument_deltas=5)
    )

    events = await collect(adapter(fake_llm, quick), QUESTION, [SEARCH])

    calls = [e.call for e in events if isinstance(e, ToolCallEvent)]
    assert [(c.name, c.arguments) for c in calls] == [("crm__search", arguments), ("crm__count", {})]
    assert len({c.id for c in calls}) == 2
    assert events[-1] == Finish("tool_calls")


@pytest.mark.parametrize("adapter", [openai, anthropic])
async def test_tool_results_go_back_in_the_providers_format(
    fake_llm: FakeLLM, quick: Settings, adapter: Callable[..., ChatProvider]
) -> None:
    fake_llm.script(Reply(text=lambda body: f"The CRM says: {last_tool_result(body)}"))
    call = ToolCall(id="call_7", name="crm__search", arguments={"q": "refunds"})
    conversation = [
        *QUESTION,
        Message("assistant", "", tool_calls=[call]),
        Message("tool", "30 days", tool_call_id="call_7", name="crm__search"),
    ]

    events = await collect(adapter(fake_llm, quick), conversation, [SEARCH])

    assert text_of(events) == "The CRM says: 30 days"
    sent = fake_llm.requests[0].body["messages"]
    if fake_llm.requests[0].path.endswith("/messages"):
        assert sent[-2] == {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_7", "name": "crm__search", "input": {"q": "refunds"}}
            ],
        }
        assert sent[-1] == {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_7", "content": "30 days"}],
        }
    else:
        assert sent[-2]["tool_calls"] == [
            {
                "id": "call_7",
                "type": "function",
                "function": {"name": "crm__search", "arguments": '{"q":"refunds"}'},
            }
        ]
        assert sent[-1] == {"role": "tool", "tool_call_id": "call_7", "content": "30 days"}


@pytest.mark.parametrize("adapter", [openai, anthropic])
async def test_rate_limits_are_retried_honouring_retry_after(
    fake_llm: FakeLLM, quick: Settings, adapter: Callable[..., ChatProvider]
) -> None:
    fake_llm.script(Fail(429, retry_after=0, times=2), Reply(text="Finally."))

    events = await collect(adapter(fake_llm, quick), QUESTION)

    assert text_of(events) == "Finally."
    assert len(fake_llm.requests) == 3


async def test_retry_after_sets_the_wait_between_attempts(
    fake_llm: FakeLLM, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(llm_max_retries=1, llm_retry_backoff_seconds=0, llm_timeout_seconds=5)
    fake_llm.script(Fail(429, retry_after=0.3), Reply(text="ok"))
    started = time.perf_counter()

    await collect(openai(fake_llm, settings), QUESTION)

    # Retry-After (0.3 s) was honoured, though the backoff setting alone would not wait at all.
    assert time.perf_counter() - started >= 0.3


async def test_server_errors_are_retried_then_reported_with_the_providers_message(
    fake_llm: FakeLLM, quick: Settings
) -> None:
    fake_llm.script(Fail(500, times=3, message="upstream exploded"))

    with pytest.raises(ProviderError) as caught:
        await collect(openai(fake_llm, quick), QUESTION)

    assert len(fake_llm.requests) == 1 + quick.llm_max_retries
    error = caught.value
    assert (error.code, error.status_code) == ("llm_provider_error", 502)
    assert error.details["status"] == 500
    assert "upstream exploded" in error.message


async def test_exhausted_rate_limit_is_a_clear_rate_limited_error(fake_llm: FakeLLM, quick: Settings) -> None:
    fake_llm.script(Fail(429, retry_after=0, times=3))

    with pytest.raises(ProviderError) as caught:
        await collect(anthropic(fake_llm, quick), QUESTION)

    assert caught.value.code == "llm_rate_limited"
    assert len(fake_llm.requests) == 3


@pytest.mark.parametrize("adapter", [openai, anthropic])
async def test_a_refused_api_key_fails_at_once_without_retries(
    fake_llm: FakeLLM, quick: Settings, adapter: Callable[..., ChatProvider]
) -> None:
    with pytest.raises(ProviderError) as caught:
        await collect(adapter(fake_llm, quick, api_key="sk-wrong-key-000000"), QUESTION)

    assert caught.value.code == "llm_auth_failed"
    assert caught.value.status_code == 502
    assert "sk-wrong" not in caught.value.message
    assert len(fake_llm.requests) == 1


@pytest.mark.parametrize("hang", [Hang(after_chunks=0), Hang(after_chunks=2)], ids=["before", "mid-stream"])
async def test_a_silent_provider_times_out_quickly_and_is_not_retried(
    fake_llm: FakeLLM, make_settings: Callable[..., Settings], hang: Hang
) -> None:
    settings = make_settings(llm_timeout_seconds=0.3, llm_max_retries=2, llm_retry_backoff_seconds=0.01)
    fake_llm.script(hang, Reply(text="too late"))
    received: list[StreamEvent] = []

    async def listen() -> None:
        async for event in openai(fake_llm, settings).stream("m", list(QUESTION), []):
            received.append(event)

    with pytest.raises(ProviderError) as caught:
        await listen()

    assert (caught.value.code, caught.value.status_code) == ("llm_timeout", 504)
    assert len(fake_llm.requests) == 1, "a timeout is not retried: the user would wait twice as long"
    assert text_of(received) == ("" if hang.after_chunks == 0 else "Hello from"[: 2 * 5])


async def test_garbage_instead_of_a_stream_is_a_bad_response(fake_llm: FakeLLM, quick: Settings) -> None:
    fake_llm.script(Garbage())

    with pytest.raises(ProviderError) as caught:
        await collect(openai(fake_llm, quick), QUESTION)

    assert caught.value.code == "llm_bad_response"


async def test_an_unreachable_provider_is_retried_then_reported(quick: Settings) -> None:
    provider = OpenAICompatibleProvider("nowhere", "http://127.0.0.1:9/v1", None, quick)

    with pytest.raises(ProviderError) as caught:
        await collect(provider, QUESTION)

    assert caught.value.code == "llm_unavailable"


async def test_a_server_without_usage_gets_a_counted_estimate(fake_llm: FakeLLM, quick: Settings) -> None:
    """Some OpenAI-compatible servers ignore ``stream_options``: usage is then estimated."""
    from app.llm import openai_compatible

    fake_llm.script(Reply(text="one two three"))
    provider = openai(fake_llm, quick)
    original: Any = openai_compatible.open_stream

    def without_usage(*args: Any, **kwargs: Any) -> Any:
        kwargs["body"] = {k: v for k, v in kwargs["body"].items() if k != "stream_options"}
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(openai_compatible, "open_stream", without_usage)
        events = await collect(provider, [Message("user", "four words in here")])

    assert Usage(4, 3) in events
