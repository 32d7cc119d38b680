"""The chat engine: one user turn through an LLM, with tools.

``run_turn`` streams the provider's answer and runs the tool loop: when the model calls tools,
each call goes to the toolset, the results are fed back, and the model is asked again, at most
``max_tool_steps`` times. The last permitted call keeps the tools described (the history refers
to them) but asks for a plain answer (``tool_choice="none"``); a model that calls tools anyway
is not obeyed. Tokens are summed over every LLM call of the turn, in a ``TurnStats`` the caller
may own: a turn cut short (its task cancelled) still knows what it used, the LLM call under way
counted by ``settle_interrupted`` with an estimate (providers report usage only at the end).
"""

import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.llm.providers import ChatProvider, ModelRoute, count_tokens
from app.llm.types import Citation, Message, TextDelta, ToolCall, ToolCallEvent, ToolResult, ToolSpec, Usage

PREVIEW_CHARS = 1000


class Tools(Protocol):
    """What the engine needs of a toolset (``app.mcp.toolset.Toolset``)."""

    tools: list[ToolSpec]

    async def call(self, call: ToolCall) -> ToolResult: ...


@dataclass(frozen=True, slots=True)
class ToolResultEvent:
    result: ToolResult


@dataclass
class TurnStats:
    started: float  # time.perf_counter() when the user's request arrived
    input_tokens: int = 0
    output_tokens: int = 0
    llm_calls: int = 0
    first_token_ms: int | None = None
    latency_ms: int = 0
    stopped_at_step_limit: bool = False
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    # The LLM call under way (until it reports its usage): its prompt, estimated, and its text.
    pending_input_tokens: int = 0
    pending_text: list[str] = field(default_factory=list)

    def elapsed_ms(self) -> int:
        return round((time.perf_counter() - self.started) * 1000)

    def settle_interrupted(self) -> None:
        """Count the LLM call that was cut short (estimated) and stop the clock."""
        self.input_tokens += self.pending_input_tokens
        self.output_tokens += count_tokens("".join(self.pending_text))
        self.pending_input_tokens, self.pending_text = 0, []
        self.latency_ms = self.elapsed_ms()


@dataclass(frozen=True, slots=True)
class TurnDone:
    content: str
    stats: TurnStats


TurnEvent = TextDelta | ToolCallEvent | ToolResultEvent | TurnDone


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _call_tool(tools: Tools, call: ToolCall) -> ToolResult:
    try:
        return await tools.call(call)
    except Exception as exc:  # the toolset promises not to raise; a bug there must not end the turn
        return ToolResult(call_id=call.id, name=call.name, content=f"The tool failed: {exc}", is_error=True)


async def run_turn(
    provider: ChatProvider,
    route: ModelRoute,
    messages: list[Message],
    tools: Tools,
    *,
    knowledge: Sequence[Citation],
    max_tool_steps: int,
    started: float,
    stats: TurnStats | None = None,
) -> AsyncIterator[TurnEvent]:
    """Events of one turn, ending with ``TurnDone``. ``messages`` grows with the tool round
    trips; ``stats`` (new when not given) is kept up to date as they happen. Provider failures
    raise ``ProviderError``."""
    stats = TurnStats(started=started) if stats is None else stats
    offered = tools.tools if max_tool_steps > 0 else []
    text: list[str] = []
    step = 0
    while True:
        may_call = step < max_tool_steps
        calls: list[ToolCall] = []
        step_text: list[str] = []
        stats.llm_calls += 1
        stats.pending_input_tokens = count_tokens(" ".join(m.content for m in messages))
        stats.pending_text = step_text
        async for event in provider.stream(
            route.model,
            messages,
            offered,
            tool_choice="auto" if may_call else "none",
            knowledge=knowledge,
        ):
            if isinstance(event, TextDelta):
                if stats.first_token_ms is None:
                    stats.first_token_ms = stats.elapsed_ms()
                step_text.append(event.text)
                yield event
            elif isinstance(event, ToolCallEvent):
                if may_call:
                    calls.append(event.call)
                    yield event
                else:
                    stats.stopped_at_step_limit = True
            elif isinstance(event, Usage):
                stats.input_tokens += event.input_tokens
                stats.output_tokens += event.output_tokens
                stats.pending_input_tokens, stats.pending_text = 0, []
        text += step_text
        if not calls:
            break
        step += 1
        messages.append(Message(role="assistant", content="".join(step_text), tool_calls=calls))
        for call in calls:
            result = await _call_tool(tools, call)
            stats.tool_calls.append(
                {
                    "id": call.id,
                    "name": call.name,
                    "arguments": call.arguments,
                    "isError": result.is_error,
                    "content": preview(result.content),
                    "latencyMs": round(result.latency_ms),
                }
            )
            yield ToolResultEvent(result)
            messages.append(
                Message(
                    role="tool",
                    content=result.content,
                    tool_call_id=call.id,
                    name=call.name,
                    is_error=result.is_error,
                )
            )
    stats.latency_ms = stats.elapsed_ms()
    yield TurnDone(content="".join(text), stats=stats)
