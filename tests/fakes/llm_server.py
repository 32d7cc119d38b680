"""A local fake LLM server speaking OpenAI's chat-completions API and Anthropic's Messages API
over real HTTP (Server-Sent Events when asked to stream), scriptable per test.

    with FakeLLM() as fake:                       # or: async with FakeLLM() as fake
        fake.script(
            Fail(429, retry_after=0, times=2),      # two rate-limited answers first
            Reply(tool_calls=[("search", {"q": "refunds"})]),
            Reply(text=lambda body: f"The tool said: {last_tool_result(body)}"),
        )
        ... point a provider at fake.openai_base_url or fake.base_url (Anthropic) ...
        fake.requests[-1].body["messages"]         # what the client sent

Each request takes the next scripted step; with none left, ``Reply()`` answers. Text streams
in small chunks, tool-call arguments in several deltas, usage in the final chunk (OpenAI) or in
``message_start``/``message_delta`` (Anthropic). ``Hang`` sends nothing (or stops mid-stream)
until the server stops, ``Garbage`` answers 200 with HTML. Requests are checked against
``api_key`` (401 otherwise) and recorded in ``fake.requests``.

Run alone for benchmarks: ``python -m tests.fakes.llm_server --port 8765``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.serving import HttpFake

Obj = dict[str, Any]
HANG_LIMIT_SECONDS = 30.0


@dataclass
class Reply:
    """An answer: ``text`` (or a function of the request body giving it) and/or tool calls."""

    text: str | Callable[[Obj], str] = "Hello from the fake LLM."
    tool_calls: list[tuple[str, Obj]] = field(default_factory=list)
    input_tokens: int = 11
    output_tokens: int = 7
    chunk_chars: int = 5
    argument_deltas: int = 3


@dataclass
class Fail:
    status: int = 500
    retry_after: float | None = None
    times: int = 1
    message: str = "The fake LLM failed on purpose"


@dataclass
class Hang:
    """Send nothing at all (``after_chunks=0``) or stop after that many text chunks."""

    after_chunks: int = 0


@dataclass
class Garbage:
    body: str = "<html><body>502 Bad Gateway (but sent as 200)</body></html>"


Step = Reply | Fail | Hang | Garbage


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Obj


def last_tool_result(body: Obj) -> str:
    """The content of the last tool result in a request (either API)."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "tool":
            return str(message.get("content"))
        content = message.get("content")
        if isinstance(content, list):
            for block in reversed(content):
                if block.get("type") == "tool_result":
                    return str(block.get("content"))
    return ""


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or []


def _split(text: str, parts: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, parts)))
    return _chunks(text, size)


def _sse(data: Obj | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    return ((f"event: {event}\n" if event else "") + f"data: {payload}\n\n").encode()


class FakeLLM(HttpFake):
    server_name = "fake LLM server"

    def __init__(self, api_key: str | None = "sk-fake-llm-key-0123456789") -> None:
        self.api_key = api_key
        self.base_url = ""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._steps: list[Step] = []
            self.requests: list[RecordedRequest] = []

    def script(self, *steps: Step) -> FakeLLM:
        with self._lock:
            for step in steps:
                if isinstance(step, Fail):
                    self._steps += [Fail(step.status, step.retry_after, 1, step.message)] * step.times
                else:
                    self._steps.append(step)
        return self

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def pending_steps(self) -> int:
        return len(self._steps)

    # ---- lifecycle ------------------------------------------------------------------------------

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._openai, methods=["POST"]),
                Route("/v1/messages", self._anthropic, methods=["POST"]),
            ]
        )

    def start(self) -> Self:
        self._stopping.clear()
        return super().start()

    def stop(self) -> None:
        self._stopping.set()  # ends hanging answers, so the server can stop
        super().stop()

    # ---- plumbing -------------------------------------------------------------------------------

    async def _receive(self, request: Request) -> tuple[RecordedRequest, Step]:
        body = json.loads(await request.body())
        record = RecordedRequest(request.url.path, dict(request.headers), body)
        with self._lock:
            self.requests.append(record)
            step = self._steps.pop(0) if self._steps else Reply()
        return record, step

    async def _hang(self) -> None:
        deadline = time.monotonic() + HANG_LIMIT_SECONDS
        while not self._stopping.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def _failure(self, step: Fail, anthropic: bool) -> JSONResponse:
        headers = {} if step.retry_after is None else {"retry-after": f"{step.retry_after:g}"}
        if anthropic:
            kind = "rate_limit_error" if step.status == 429 else "api_error"
            body: Obj = {"type": "error", "error": {"type": kind, "message": step.message}}
        else:
            body = {"error": {"message": step.message, "type": "server_error", "code": None}}
        return JSONResponse(body, status_code=step.status, headers=headers)

    def _unauthorized(self, anthropic: bool) -> JSONResponse:
        if anthropic:
            body: Obj = {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
            }
        else:
            body = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
        return JSONResponse(body, status_code=401)

    async def _before(
        self, request: Request, anthropic: bool
    ) -> tuple[RecordedRequest, Step, Response | None]:
        record, step = await self._receive(request)
        if self.api_key is not None:
            given = (
                request.headers.get("x-api-key")
                if anthropic
                else request.headers.get("authorization", "").removeprefix("Bearer ")
            )
            if given != self.api_key:
                return record, step, self._unauthorized(anthropic)
        if isinstance(step, Fail):
            return record, step, self._failure(step, anthropic)
        if isinstance(step, Garbage):
            return record, step, Response(step.body, media_type="text/html")
        if isinstance(step, Hang) and step.after_chunks == 0:
            await self._hang()
            return record, step, Response(status_code=504)
        return record, step, None

    @staticmethod
    def _answer(record: RecordedRequest, step: Step) -> tuple[Reply, str, str, int | None]:
        """What to answer: the reply, its text, the model asked for, and after how many text
        chunks to hang (None: do not)."""
        hang_after = step.after_chunks if isinstance(step, Hang) else None
        reply = step if isinstance(step, Reply) else Reply()
        text = reply.text(record.body) if callable(reply.text) else reply.text
        return reply, text, record.body.get("model", "fake"), hang_after

    # ---- OpenAI ---------------------------------------------------------------------------------

    async def _openai(self, request: Request) -> Response:
        record, step, early = await self._before(request, anthropic=False)
        if early is not None:
            return early
        reply, text, model, hang_after = self._answer(record, step)
        if not record.body.get("stream"):
            message: Obj = {"role": "assistant", "content": text or None}
            if reply.tool_calls:
                message["tool_calls"] = [
                    {
                        "id": f"call_{i}",
                        "type": "function",
                        "function": {"name": n, "arguments": json.dumps(a)},
                    }
                    for i, (n, a) in enumerate(reply.tool_calls)
                ]
            return JSONResponse(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": "tool_calls" if reply.tool_calls else "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": reply.input_tokens,
                        "completion_tokens": reply.output_tokens,
                        "total_tokens": reply.input_tokens + reply.output_tokens,
                    },
                }
            )

        def chunk(delta: Obj, finish: str | None = None) -> bytes:
            return _sse(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )

        async def stream() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": ""})
            for n, piece in enumerate(_chunks(text, reply.chunk_chars)):
                if hang_after is not None and n >= hang_after:
                    await self._hang()
                    return
                yield chunk({"content": piece})
            for index, (name, arguments) in enumerate(reply.tool_calls):
                yield chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": f"call_{index}",
                                "type": "function",
                                "function": {"name": name, "arguments": ""},
                            }
                        ]
                    }
                )
                for part in _split(json.dumps(arguments), reply.argument_deltas):
                    yield chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
            yield chunk({}, "tool_calls" if reply.tool_calls else "stop")
            if (record.body.get("stream_options") or {}).get("include_usage"):
                yield _sse(
                    {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion.chunk",
                        "model": model,
                        "choices": [],
                        "usage": {
                            "prompt_tokens": reply.input_tokens,
                            "completion_tokens": reply.output_tokens,
                            "total_tokens": reply.input_tokens + reply.output_tokens,
                        },
                    }
                )
            yield _sse("[DONE]")

        return StreamingResponse(stream(), media_type="text/event-stream")

    # ---- Anthropic ------------------------------------------------------------------------------

    async def _anthropic(self, request: Request) -> Response:
        record, step, early = await self._before(request, anthropic=True)
        if early is not None:
            return early
        reply, text, model, hang_after = self._answer(record, step)
        stop_reason = "tool_use" if reply.tool_calls else "end_turn"
        if not record.body.get("stream"):
            content: list[Obj] = [{"type": "text", "text": text}] if text else []
            content += [
                {"type": "tool_use", "id": f"toolu_{i}", "name": n, "input": a}
                for i, (n, a) in enumerate(reply.tool_calls)
            ]
            return JSONResponse(
                {
                    "id": "msg_fake",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop_reason,
                    "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
                }
            )

        async def stream() -> AsyncIterator[bytes]:
            yield _sse(
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_fake",
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
                    },
                },
                "message_start",
            )
            yield _sse({"type": "ping"}, "ping")
            index = 0
            if text:
                yield _sse(
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                    "content_block_start",
                )
                for n, piece in enumerate(_chunks(text, reply.chunk_chars)):
                    if hang_after is not None and n >= hang_after:
                        await self._hang()
                        return
                    yield _sse(
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                        "content_block_delta",
                    )
                yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
                index = 1
            for i, (name, arguments) in enumerate(reply.tool_calls):
                block = index + i
                yield _sse(
                    {
                        "type": "content_block_start",
                        "index": block,
                        "content_block": {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": {}},
                    },
                    "content_block_start",
                )
                for part in _split(json.dumps(arguments), reply.argument_deltas):
                    yield _sse(
                        {
                            "type": "content_block_delta",
                            "index": block,
                            "delta": {"type": "input_json_delta", "partial_json": part},
                        },
                        "content_block_delta",
                    )
                yield _sse({"type": "content_block_stop", "index": block}, "content_block_stop")
            yield _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": reply.output_tokens},
                },
                "message_delta",
            )
            yield _sse({"type": "message_stop"}, "message_stop")

        return StreamingResponse(stream(), media_type="text/event-stream")


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the fake LLM (OpenAI and Anthropic APIs).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", default="sk-fake-llm-key-0123456789")
    args = parser.parse_args()
    fake = FakeLLM(api_key=args.api_key)
    uvicorn.run(fake.app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
