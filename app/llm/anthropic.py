"""Anthropic's Messages API, streamed: the system prompt travels apart from the messages, tool
results go back as ``tool_result`` blocks of a user turn."""

from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson

from app.core.config import Settings
from app.llm.errors import ProviderError, bad_response
from app.llm.http import json_object, open_stream, sse_events
from app.llm.providers import ToolChoice, retry_policy
from app.llm.types import (
    Citation,
    Finish,
    Message,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallEvent,
    ToolSpec,
    Usage,
)

API_VERSION = "2023-06-01"
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


def wire_request(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, messages): consecutive tool results merge into one user turn, as the API
    wants turns to alternate; an assistant turn with no text and no tool call is left out (the API
    refuses empty content, and would refuse the whole conversation from then on)."""
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    wire: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        if message.role == "assistant" and not message.content.strip() and not message.tool_calls:
            continue
        if message.role == "tool":
            block: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
            if message.is_error:
                block["is_error"] = True
            if wire and wire[-1]["role"] == "user" and isinstance(wire[-1]["content"], list):
                wire[-1]["content"].append(block)
            else:
                wire.append({"role": "user", "content": [block]})
        elif message.role == "assistant" and message.tool_calls:
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": message.content}] if message.content.strip() else []
            )
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                for c in message.tool_calls
            ]
            wire.append({"role": "assistant", "content": blocks})
        else:
            wire.append({"role": message.role, "content": message.content})
    return system, wire


class AnthropicProvider:
    def __init__(self, name: str, base_url: str, api_key: str | None, settings: Settings) -> None:
        self.name = name
        self._url = base_url.rstrip("/").removesuffix("/v1") + "/v1/messages"
        self._headers = {"anthropic-version": API_VERSION, **({"x-api-key": api_key} if api_key else {})}
        self._policy = retry_policy(settings)
        self._max_tokens = settings.llm_max_output_tokens

    async def stream(
        self,
        model: str,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        tool_choice: ToolChoice = "auto",
        knowledge: Sequence[Citation] = (),
    ) -> AsyncIterator[StreamEvent]:
        system, wire = wire_request(messages)
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": self._max_tokens,
            "messages": wire,
            "stream": True,
        }
        if system:
            body["system"] = system
        if tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools
            ]
            body["tool_choice"] = {"type": tool_choice}
        input_tokens = output_tokens = 0
        blocks: dict[int, dict[str, Any]] = {}  # tool_use blocks being streamed
        calls: list[ToolCall] = []
        stop: str | None = None
        finished = False
        deadline = self._policy.deadline()
        async with open_stream(
            self.name, self._url, headers=self._headers, body=body, policy=self._policy, deadline=deadline
        ) as r:
            async for _, data in sse_events(r, self.name, self._policy, deadline):
                event = json_object(self.name, data)
                kind = event.get("type")
                if kind == "message_start":
                    usage = (event.get("message") or {}).get("usage") or {}
                    input_tokens = int(usage.get("input_tokens") or 0)
                    output_tokens = int(usage.get("output_tokens") or 0)
                elif kind == "content_block_start":
                    block = event.get("content_block") or {}
                    if block.get("type") == "tool_use":
                        blocks[int(event.get("index", 0))] = {
                            "id": block.get("id"),
                            "name": block.get("name"),
                            "json": [],
                        }
                elif kind == "content_block_delta":
                    delta = event.get("delta") or {}
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        yield TextDelta(delta["text"])
                    elif delta.get("type") == "input_json_delta":
                        pending = blocks.get(int(event.get("index", 0)))
                        if pending is not None:
                            pending["json"].append(delta.get("partial_json") or "")
                elif kind == "content_block_stop":
                    pending = blocks.pop(int(event.get("index", 0)), None)
                    if pending is not None:
                        calls.append(self._assemble(pending))
                        yield ToolCallEvent(calls[-1])
                elif kind == "message_delta":
                    stop = (event.get("delta") or {}).get("stop_reason") or stop
                    usage = event.get("usage") or {}
                    output_tokens = int(usage.get("output_tokens") or output_tokens)
                    if usage.get("input_tokens"):
                        input_tokens = int(usage["input_tokens"])
                elif kind == "message_stop":
                    finished = True
                    break
                elif kind == "error":
                    error = event.get("error") or {}
                    overloaded = error.get("type") in ("overloaded_error", "rate_limit_error")
                    said = str(error.get("message"))[:200]
                    raise ProviderError(
                        f"The LLM provider {self.name!r} failed mid-answer: {said}",
                        code="llm_rate_limited" if overloaded else "llm_provider_error",
                        details={"provider": self.name, "type": error.get("type")},
                    )
        if not finished:
            raise bad_response(self.name, "the stream ended before the answer did")
        yield Usage(input_tokens, output_tokens)
        yield Finish("tool_calls" if calls else _FINISH.get(stop or "end_turn", "stop"))  # type: ignore[arg-type]

    def _assemble(self, block: dict[str, Any]) -> ToolCall:
        raw = "".join(block["json"]).strip() or "{}"
        try:
            arguments = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise bad_response(self.name, f"the input of tool call {block['name']!r} is not JSON") from exc
        if not isinstance(arguments, dict) or not block.get("name"):
            raise bad_response(self.name, "a tool call has no name or a non-object input")
        return ToolCall(
            id=str(block.get("id") or block["name"]), name=str(block["name"]), arguments=arguments
        )
