"""Project chat in the builder studio: ``POST /api/projects/{id}/chat`` answers as Server-Sent
Events (``Accept: text/event-stream``) or JSON, and the project's conversations can be listed,
read and deleted. Project owner or administrators; anyone else gets 404."""

import time
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.responses import StreamingResponse

from app.auth.deps import CurrentPrincipal
from app.chat.responses import AfterCommitResponse, json_answer, sse_answer
from app.chat.schemas import ChatAnswer, ChatRequest, ChatSummary, ProjectChatOut
from app.chat.service import (
    Asker,
    ChatProject,
    chat_service,
)
from app.core.db import DB
from app.core.openapi import errors
from app.core.pagination import Pagination
from app.core.runtime import runtime
from app.core.schemas import Page, PaginationInfo
from app.models import ChatChannel, Project
from app.projects.service import project_service

router = APIRouter(prefix="/api/projects", tags=["chat"])

SSE_DOC = """Server-Sent Events, in order: `conversation` {conversationId, messageId (the stored
question)}, `citations` [{chunkId, fileId, fileName, ordinal, score, text}], any number of `delta`
{text}, `tool_call` {id, name, arguments} and `tool_result` {id, name, isError, content (preview)},
then `usage` {inputTokens, outputTokens, costUsd, model, latencyMs, firstTokenMs} and `done`
{messageId}; or, when the LLM fails or the answer cannot be stored, `error` {code, message} and
the stream ends. A client that disconnects does not stop the answer: it is stored (and metered)
and reads back with the conversation."""


async def get_owned_project(project_id: UUID, db: DB, principal: CurrentPrincipal) -> Project:
    return await project_service.get_visible(db, principal, project_id)


OwnedProject = Annotated[Project, Depends(get_owned_project)]


@router.post(
    "/{project_id}/chat",
    response_model=ChatAnswer,
    responses={
        **errors(401, 404, 409),
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}, "example": SSE_DOC}}},
        500: {"description": "The answer could not be stored (`chat_save_failed`); the question is kept"},
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
    One question at a time per conversation: 409 `chat_busy` while the previous one is answered.

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
    run = chat_service.answer_after_commit(db, turn)
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(
            sse_answer(turn, run),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return AfterCommitResponse(lambda: json_answer(turn, run))


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
