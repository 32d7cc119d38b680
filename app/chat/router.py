"""Project chat in the builder studio: ``POST /api/projects/{id}/chat`` answers as Server-Sent
Events (``Accept: text/event-stream``) or JSON, and the project's conversations can be listed,
read and deleted. Project owner or administrators; anyone else gets 404."""

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Annotated, Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from app.auth.deps import CurrentPrincipal
from app.chat.schemas import ChatAnswer, ChatRequest, ChatSummary, ProjectChatOut
from app.chat.service import (
    AnswerFailed,
    AnswerSaved,
    Asker,
    ChatProject,
    PreparedTurn,
    chat_service,
    citation_out,
)
from app.core.db import DB
from app.core.errors import JSONBody, error_response
from app.core.openapi import errors
from app.core.pagination import Pagination
from app.core.runtime import runtime
from app.core.schemas import Page, PaginationInfo
from app.llm.engine import ToolResultEvent, preview
from app.llm.types import TextDelta, ToolCallEvent
from app.models import ChatChannel, Project
from app.projects.service import project_service

router = APIRouter(prefix="/api/projects", tags=["chat"])

TOOL_PREVIEW_CHARS = 500

SSE_DOC = """Server-Sent Events, in order: `conversation` {conversationId, messageId (the stored
question)}, `citations` [{chunkId, fileId, fileName, ordinal, score, text}], any number of `delta`
{text}, `tool_call` {id, name, arguments} and `tool_result` {id, name, isError, content (preview)},
then `usage` {inputTokens, outputTokens, costUsd, model, latencyMs, firstTokenMs} and `done`
{messageId}; or, when the LLM fails, `error` {code, message} and the stream ends."""


async def get_owned_project(project_id: UUID, db: DB, principal: CurrentPrincipal) -> Project:
    return await project_service.get_visible(db, principal, project_id)


OwnedProject = Annotated[Project, Depends(get_owned_project)]


class AfterCommitResponse(Response):
    """A JSON response computed only when it is sent, i.e. after the request's session has
    committed (FastAPI closes ``scope="function"`` dependencies before sending)."""

    def __init__(self, produce: Callable[[], Awaitable[JSONBody]]) -> None:
        super().__init__()
        self._produce = produce

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (await self._produce())(scope, receive, send)


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def _event_stream(turn: PreparedTurn) -> AsyncIterator[bytes]:
    yield _sse("conversation", {"conversationId": str(turn.chat_id), "messageId": str(turn.user_message_id)})
    yield _sse("citations", [citation_out(c) for c in turn.knowledge])
    async with aclosing(chat_service.answer(turn)) as events:
        async for event in events:
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


async def _json_answer(turn: PreparedTurn) -> JSONBody:
    async with aclosing(chat_service.answer(turn)) as events:
        async for event in events:
            if isinstance(event, AnswerSaved):
                answer = ChatAnswer.model_validate(
                    {
                        "conversation_id": turn.chat_id,
                        "message": {
                            "id": event.message_id,
                            "content": event.content,
                            "metadata": event.metadata,
                        },
                    }
                )
                return JSONBody(answer.model_dump(mode="json", by_alias=True))
            if isinstance(event, AnswerFailed):
                details = {**event.details, "conversationId": str(turn.chat_id)}
                return error_response(event.status, event.code, event.message, details)
        raise AssertionError("a turn always ends with AnswerSaved or AnswerFailed")


@router.post(
    "/{project_id}/chat",
    response_model=ChatAnswer,
    responses={
        **errors(401, 404, 409),
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}, "example": SSE_DOC}}},
        502: {
            "description": "The LLM provider failed (`llm_provider_error`, `llm_rate_limited`, "
            "`llm_auth_failed`, `llm_unavailable`, `llm_bad_response`); the question is kept"
        },
        504: {"description": "The LLM provider went silent (`llm_timeout`); the question is kept"},
    },
)
async def chat(
    request: Request, project: OwnedProject, body: ChatRequest, db: DB, principal: CurrentPrincipal
) -> Response:
    """Ask the project: its system prompt, the conversation's history (when `conversationId` is
    given), the best knowledge chunks and its MCP tools go to its LLM (`offline` when none is set).
    The question is stored before the LLM is called; a failed answer is stored with its error.

    With `Accept: text/event-stream` the answer streams as Server-Sent Events (see the 200
    response); otherwise it is JSON: `{conversationId, message: {id, role, content, metadata:
    {citations, toolCalls, usage, model}}}`."""
    started = time.perf_counter()
    turn = await chat_service.prepare_turn(
        db,
        runtime().settings,
        ChatProject(id=project.id, prompt=project.prompt, llm=project.llm, mcp_servers=project.mcp_servers),
        Asker(channel=ChatChannel.STUDIO, user_id=principal.user_id),
        body.message,
        conversation_id=body.conversation_id,
        started=started,
    )
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(
            _event_stream(turn),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return AfterCommitResponse(lambda: _json_answer(turn))


@router.get("/{project_id}/chats", response_model=Page[ChatSummary], responses=errors(401, 404))
async def list_chats(project: OwnedProject, db: DB, page: Pagination) -> Page[ChatSummary]:
    """The project's studio conversations, most recently active first. Sort: `updatedAt`, `createdAt`."""
    items, total = await chat_service.list_chats(db, project.id, page, channel=ChatChannel.STUDIO)
    return Page(items=items, pagination=PaginationInfo(total=total, page=page.page, limit=page.limit))


@router.get("/{project_id}/chats/{chat_id}", response_model=ProjectChatOut, responses=errors(401, 404))
async def get_chat(project: OwnedProject, chat_id: UUID, db: DB) -> ProjectChatOut:
    """A studio conversation with its messages, oldest first."""
    return await chat_service.get_chat(db, project.id, chat_id, channel=ChatChannel.STUDIO)


@router.delete(
    "/{project_id}/chats/{chat_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 404)
)
async def delete_chat(project: OwnedProject, chat_id: UUID, db: DB) -> None:
    """Delete a studio conversation and its messages."""
    await chat_service.delete_chat(db, project.id, chat_id, channel=ChatChannel.STUDIO)
