"""An OpenAI-compatible LLM whose pace the test controls, over real HTTP on 127.0.0.1 (the
scriptable ``tests.fakes.llm_server.FakeLLM`` answers as fast as it can; these answers do not):

    with PacedLLM() as llm:
        llm.script(Gated(["Hel", "lo."]))          # first piece, then waits for llm.release()
        llm.script(Trickle("x", every=0.05, pieces=200))  # one piece every 50 ms
        llm.script(RateLimited(retry_after="soon"))   # 429 with that Retry-After header
        llm.openai_base_url, llm.requests, llm.wait_for_requests(1)

With no step left it answers "Hello." at once. Usage is reported at the end of every stream.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.serving import HttpFake

WAIT_LIMIT_SECONDS = 30.0


@dataclass
class Gated:
    """Stream ``pieces[0]``, wait for ``release()``, then stream the rest."""

    pieces: list[str]
    input_tokens: int = 40
    output_tokens: int = 12


@dataclass
class Trickle:
    """Stream ``piece`` every ``every`` seconds, ``pieces`` times, then finish normally."""

    piece: str = "."
    every: float = 0.05
    pieces: int = 200


@dataclass
class RateLimited:
    retry_after: str


@dataclass
class Now:
    text: str = "Hello."
    input_tokens: int = 11
    output_tokens: int = 7


Step = Gated | Trickle | RateLimited | Now


def _chunk(data: dict[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def _delta(text: str | None, finish: str | None = None) -> bytes:
    delta = {} if text is None else {"content": text}
    return _chunk(
        {
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def _end(input_tokens: int, output_tokens: int) -> list[bytes]:
    usage = {"prompt_tokens": input_tokens, "completion_tokens": output_tokens}
    return [
        _delta(None, "stop"),
        _chunk({"object": "chat.completion.chunk", "choices": [], "usage": usage}),
        _chunk("[DONE]"),
    ]


@dataclass
class PacedLLM(HttpFake):
    server_name = "paced LLM server"

    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""

    def __post_init__(self) -> None:
        self._steps: list[Step] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._stopping = threading.Event()

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    def script(self, *steps: Step) -> PacedLLM:
        with self._lock:
            self._steps += steps
        return self

    def release(self) -> None:
        self._released.set()

    async def wait_for_requests(self, count: int) -> None:
        """Until ``count`` requests have arrived (at most ``WAIT_LIMIT_SECONDS``)."""
        deadline = time.monotonic() + WAIT_LIMIT_SECONDS
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the LLM got {len(self.requests)} requests, not {count}")
            await asyncio.sleep(0.01)

    async def _wait_released(self) -> None:
        deadline = time.monotonic() + WAIT_LIMIT_SECONDS
        while not self._released.is_set() and not self._stopping.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _completions(self, request: Request) -> Response:
        body = json.loads(await request.body())
        with self._lock:
            self.requests.append(body)
            step = self._steps.pop(0) if self._steps else Now()
        if isinstance(step, RateLimited):
            error = {"error": {"message": "slow down", "type": "rate_limit"}}
            return JSONResponse(error, status_code=429, headers={"retry-after": step.retry_after})

        async def stream() -> AsyncIterator[bytes]:
            if isinstance(step, Now):
                yield _delta(step.text)
                for part in _end(step.input_tokens, step.output_tokens):
                    yield part
            elif isinstance(step, Gated):
                yield _delta(step.pieces[0])
                await self._wait_released()
                for piece in step.pieces[1:]:
                    yield _delta(piece)
                for part in _end(step.input_tokens, step.output_tokens):
                    yield part
            else:
                for _ in range(step.pieces):
                    if self._stopping.is_set():
                        return
                    yield _delta(step.piece)
                    await asyncio.sleep(step.every)
                for part in _end(10, step.pieces):
                    yield part

        return StreamingResponse(stream(), media_type="text/event-stream")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._completions, methods=["POST"])])

    def stop(self) -> None:
        self._stopping.set()  # ends gated and trickling answers, so the server can stop
        super().stop()
