"""Providers that misbehave slowly or oddly: an unreadable ``Retry-After``, a stream that
trickles for ever, and a history with an empty answer in it."""

from collections.abc import Callable, Iterator

import httpx
import pytest

from app.core.config import Settings
from app.llm.anthropic import wire_request
from app.llm.errors import ProviderError
from app.llm.http import _retry_after
from app.llm.openai_compatible import OpenAICompatibleProvider
from app.llm.types import Message, TextDelta, ToolCall
from tests.llm.paced_llm import Now, PacedLLM, RateLimited, Trickle

QUESTION = [Message("user", "What is our refund window?")]


@pytest.fixture
def paced() -> Iterator[PacedLLM]:
    with PacedLLM() as llm:
        yield llm


def provider(llm: PacedLLM, settings: Settings) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider("paced", llm.openai_base_url, None, settings)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("soon", None),
        ("", None),
        ("nan", None),
        ("Mon, 99 Foo 2026 25:61:00 GMT", None),
        ("2.5", 2.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: go now
    ],
)
def test_retry_after_is_read_when_it_can_be_and_ignored_when_not(header: str, seconds: float | None) -> None:
    assert _retry_after(httpx.Headers({"retry-after": header})) == seconds


async def test_an_unreadable_retry_after_falls_back_to_backoff_instead_of_failing(
    paced: PacedLLM, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(llm_max_retries=1, llm_retry_backoff_seconds=0.01, llm_timeout_seconds=5)
    paced.script(RateLimited(retry_after="soon"), Now("Finally."))

    events = [e async for e in provider(paced, settings).stream("m", list(QUESTION), [])]

    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Finally."
    assert len(paced.requests) == 2


async def test_a_provider_trickling_tokens_is_stopped_at_the_call_deadline(
    paced: PacedLLM, make_settings: Callable[..., Settings]
) -> None:
    # Every piece comes well within the per-read timeout; only the deadline can end this call.
    settings = make_settings(llm_timeout_seconds=5, llm_call_deadline_seconds=0.5, llm_max_retries=0)
    paced.script(Trickle(".", every=0.05, pieces=200))
    received: list[str] = []

    async def listen() -> None:
        async for event in provider(paced, settings).stream("m", list(QUESTION), []):
            if isinstance(event, TextDelta):
                received.append(event.text)

    with pytest.raises(ProviderError) as caught:
        await listen()

    assert (caught.value.code, caught.value.status_code) == ("llm_timeout", 504)
    assert caught.value.details == {"provider": "paced", "deadlineSeconds": 0.5}
    assert 0 < len(received) < 200


async def test_a_retry_that_would_wait_past_the_deadline_is_not_attempted(
    paced: PacedLLM, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(llm_timeout_seconds=5, llm_call_deadline_seconds=0.5, llm_max_retries=3)
    paced.script(RateLimited(retry_after="2"), Now("too late"))

    with pytest.raises(ProviderError) as caught:
        await anext(aiter(provider(paced, settings).stream("m", list(QUESTION), [])))

    assert caught.value.code == "llm_rate_limited"
    assert len(paced.requests) == 1


def test_anthropic_never_gets_an_empty_assistant_turn() -> None:
    lookup = ToolCall(id="toolu_1", name="crm__lookup", arguments={"id": "A-1"})
    history = [
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", ""),
        Message("user", "Hello?"),
        Message("assistant", " \n"),
        Message("user", "Order A-1?"),
        Message("assistant", "", tool_calls=[lookup]),
        Message("tool", "shipped", tool_call_id="toolu_1", name="crm__lookup"),
    ]

    system, wire = wire_request(history)

    assert system == "Be brief."
    assert wire == [
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "Hello?"},
        {"role": "user", "content": "Order A-1?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "crm__lookup", "input": {"id": "A-1"}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "shipped"}],
        },
    ]
