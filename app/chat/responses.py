"""How a chat answer reaches its caller, for the studio and the widget alike: relayed from its
``AnswerRun`` as Server-Sent Events, or as one JSON body produced after the request's commit."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.chat.schemas import ChatAnswer
from app.chat.service import AnswerFailed, AnswerRun, AnswerSaved, PreparedTurn, citation_out
from app.core.errors import JSONBody, error_response
from app.llm.engine import ToolResultEvent, preview
from app.llm.types import TextDelta, ToolCallEvent

TOOL_PREVIEW_CHARS = 500


class AfterCommitResponse(Response):
    """A JSON response computed only when it is sent, i.e. after the request's session has
    committed (FastAPI closes ``scope="function"`` dependencies before sending) and the answer,
    started by that commit, is in."""

    def __init__(self, produce: Callable[[], Awaitable[JSONBody]]) -> None:
        super().__init__()
        self._produce = produce

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (await self._produce())(scope, receive, send)


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def sse_answer(turn: PreparedTurn, run: AnswerRun) -> AsyncIterator[bytes]:
    """Relays the answer's events (``run``, or an answer started now); dropping this stream
    leaves the answer running."""
    yield _sse("conversation", {"conversationId": str(turn.chat_id), "messageId": str(turn.user_message_id)})
    yield _sse("citations", [citation_out(c) for c in turn.knowledge])
    async for event in run.events():
        if isinstance(event, TextDelta):
            yield _sse("delta", {"text": event.text})
        elif isinstance(event, ToolCallEvent):
            call = event.call
            yield _sse("tool_call", {"id": call.id, "name": call.name, "arguments": call.arguments})
        elif isinstance(event, ToolResultEvent):
            result = event.result
            yield _sse(
                "tool_result",
                {
                    "id": result.call_id,
                    "name": result.name,
                    "isError": result.is_error,
                    "content": preview(result.content, TOOL_PREVIEW_CHARS),
                },
            )
        elif isinstance(event, AnswerSaved):
            yield _sse("usage", event.metadata["usage"])
            yield _sse("done", {"messageId": str(event.message_id)})
        elif isinstance(event, AnswerFailed):
            yield _sse("error", {"code": event.code, "message": event.message})


async def json_answer(turn: PreparedTurn, run: AnswerRun) -> JSONBody:
    outcome = await run.outcome()
    if isinstance(outcome, AnswerFailed):
        details = {**outcome.details, "conversationId": str(turn.chat_id)}
        return error_response(outcome.status, outcome.code, outcome.message, details)
    answer = ChatAnswer.model_validate(
        {
            "conversation_id": turn.chat_id,
            "message": {"id": outcome.message_id, "content": outcome.content, "metadata": outcome.metadata},
        }
    )
    return JSONBody(answer.model_dump(mode="json", by_alias=True))
