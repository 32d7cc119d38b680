"""One interface over every LLM: ``stream(model, messages, tools)`` yields ``TextDelta`` and
``ToolCallEvent`` as they come, then one ``Usage`` and one ``Finish`` (``app.llm.types``).

``build_provider`` picks the adapter for a resolved model: ``openai_compatible`` (OpenAI,
Ollama, vLLM, OpenRouter...), ``anthropic`` (the Messages API) or the built-in ``offline`` one.
"""

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol

from app.core.config import Settings
from app.llm.http import RetryPolicy
from app.llm.types import Citation, Message, StreamEvent, ToolSpec

ProviderKind = Literal["openai_compatible", "anthropic", "offline"]
ToolChoice = Literal["auto", "none"]

OFFLINE_KEY = "offline"


@dataclass(frozen=True)
class ModelRoute:
    """Everything needed to call one configured model (the API key decrypted)."""

    key: str  # what Project.llm holds
    display_name: str
    provider_name: str
    kind: ProviderKind
    model: str  # the name sent to the provider
    base_url: str = ""
    api_key: str | None = None
    input_price_per_mtok: Decimal | None = None
    output_price_per_mtok: Decimal | None = None

    def cost_usd(self, input_tokens: int, output_tokens: int) -> Decimal | None:
        """USD cost from the price table, to the millionth of a dollar; ``None`` when the model
        has no prices (a missing one of the two counts as free)."""
        if self.input_price_per_mtok is None and self.output_price_per_mtok is None:
            return None
        cost = (
            input_tokens * (self.input_price_per_mtok or Decimal(0))
            + output_tokens * (self.output_price_per_mtok or Decimal(0))
        ) / Decimal(1_000_000)
        return cost.quantize(Decimal("0.000001"))


OFFLINE_ROUTE = ModelRoute(
    key=OFFLINE_KEY,
    display_name="Offline (built in, answers from the knowledge base)",
    provider_name=OFFLINE_KEY,
    kind="offline",
    model=OFFLINE_KEY,
    input_price_per_mtok=Decimal(0),
    output_price_per_mtok=Decimal(0),
)


class ChatProvider(Protocol):
    name: str

    def stream(
        self,
        model: str,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        tool_choice: ToolChoice = "auto",
        knowledge: Sequence[Citation] = (),
    ) -> AsyncIterator[StreamEvent]:
        """``tool_choice="none"`` keeps the tools described (the history may use them) but asks
        for a plain answer. ``knowledge`` is already in the system prompt; only the offline
        provider reads it directly."""
        ...


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        timeout_seconds=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
        backoff_seconds=settings.llm_retry_backoff_seconds,
        deadline_seconds=settings.llm_call_deadline_seconds,
    )


def count_tokens(text: str) -> int:
    """A stand-in token count (whitespace-separated words) for when a provider reports none."""
    return len(text.split())


def build_provider(route: ModelRoute, settings: Settings) -> ChatProvider:
    from app.llm.anthropic import AnthropicProvider
    from app.llm.offline import OfflineProvider
    from app.llm.openai_compatible import OpenAICompatibleProvider

    if route.kind == "openai_compatible":
        return OpenAICompatibleProvider(route.provider_name, route.base_url, route.api_key, settings)
    if route.kind == "anthropic":
        return AnthropicProvider(route.provider_name, route.base_url, route.api_key, settings)
    return OfflineProvider()
