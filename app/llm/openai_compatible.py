"""OpenAI's chat-completions API, streamed (also spoken by Ollama, vLLM, OpenRouter, LM Studio)."""

from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson

from app.core.config import Settings
from app.llm.errors import bad_response
from app.llm.http import json_object, open_stream, sse_events
from app.llm.providers import ToolChoice, count_tokens, retry_policy
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

_FINISH = {"stop": "stop", "tool_calls": "tool_calls", "function_call": "tool_calls", "length": "length"}


def wire_messages(messages: list[Message]) -> list[dict[str, Any]]:
    wire: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool":
            wire.append({"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content})
        elif message.role == "assistant" and message.tool_calls:
            wire.append(
                {
                    "role": "assistant",
                    "content": message.content or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {
                                "name": call.name,
                                "arguments": orjson.dumps(call.arguments).decode(),
                            },
                        }
                        for call in message.tool_calls
                    ],
                }
            )
        else:
            wire.append({"role": message.role, "content": message.content})
    return wire


def wire_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tools
    ]


class _PendingCall:
    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []


class OpenAICompatibleProvider:
    def __init__(self, name: str, base_url: str, api_key: str | None, settings: Settings) -> None:
        self.name = name
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
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
        body: dict[str, Any] = {
            "model": model,
            "messages": wire_messages(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": self._max_tokens,
        }
        if tools:
            body["tools"] = wire_tools(tools)
            body["tool_choice"] = tool_choice
        pending: dict[int, _PendingCall] = {}
        usage: Usage | None = None
        finish: str | None = None
        done = False
        text_out: list[str] = []
        deadline = self._policy.deadline()
        async with open_stream(
            self.name, self._url, headers=self._headers, body=body, policy=self._policy, deadline=deadline
        ) as r:
            async for _, data in sse_events(r, self.name, self._policy, deadline):
                if data.strip() == "[DONE]":
                    done = True
                    break
                chunk = json_object(self.name, data)
                if "error" in chunk:
                    raise bad_response(
                        self.name, f"the stream reported an error: {str(chunk['error'])[:200]}"
                    )
                if isinstance(chunk.get("usage"), dict):
                    reported = chunk["usage"]
                    usage = Usage(
                        input_tokens=int(reported.get("prompt_tokens") or 0),
                        output_tokens=int(reported.get("completion_tokens") or 0),
                    )
                for choice in chunk.get("choices") or []:
                    delta = choice.get("delta") or {}
                    text = delta.get("content")
                    if text:
                        text_out.append(text)
                        yield TextDelta(text)
                    for part in delta.get("tool_calls") or []:
                        call = pending.setdefault(int(part.get("index", 0)), _PendingCall())
                        call.id = part.get("id") or call.id
                        function = part.get("function") or {}
                        call.name = function.get("name") or call.name
                        if function.get("arguments"):
                            call.arguments.append(function["arguments"])
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
        if not done and finish is None:
            raise bad_response(self.name, "the stream ended before the answer did")
        for index in sorted(pending):
            yield ToolCallEvent(self._assemble(index, pending[index]))
        if usage is None:
            prompt = " ".join(m.content for m in messages)
            usage = Usage(count_tokens(prompt), count_tokens("".join(text_out)))
        yield usage
        reason = _FINISH.get(finish or "stop", "stop")
        yield Finish("tool_calls" if pending else reason)  # type: ignore[arg-type]

    def _assemble(self, index: int, call: _PendingCall) -> ToolCall:
        if not call.name:
            raise bad_response(self.name, f"tool call {index} has no name")
        raw = "".join(call.arguments).strip() or "{}"
        try:
            arguments = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise bad_response(self.name, f"the arguments of tool call {call.name!r} are not JSON") from exc
        if not isinstance(arguments, dict):
            raise bad_response(self.name, f"the arguments of tool call {call.name!r} are not an object")
        return ToolCall(id=call.id or f"call_{index}", name=call.name, arguments=arguments)
