"""Project conversations: a user turn is stored, answered by the project's LLM (with its
knowledge and MCP tools) and the answer stored with its usage.

A turn has two phases, so the question survives whatever happens to the answer:

1. ``prepare_turn`` runs in the request's session: it resolves the model, finds or opens the
   conversation, stores the user's message and retrieves the knowledge. The request's one commit
   makes all that durable before any LLM is called (the router returns a response that only
   starts the LLM once the session has committed).
2. ``answer`` runs while the response is sent (streamed or not): the engine's events, then the
   assistant message written with a session of its own (the request's is closed by then),
   together with the ``chat.message`` event.

A failed answer (provider error, timeout) is stored as an assistant message with empty content
and ``metadata.error`` = {code, message}; it is never sent to the model as history and records
no ``chat.message`` event. A client that disconnects mid-answer leaves only its question.

Both channels use these functions: the studio (``channel=studio``, a signed-in builder or admin)
and the embeddable widget (``channel=widget`` with ``widget_id`` and ``visitor_id``, no user).
"""

import logging
import time
from collections.abc import AsyncGenerator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.chat.repository import chat_repository
from app.chat.schemas import ChatMessageOut, ChatSummary, ProjectChatOut
from app.core.config import Settings
from app.core.db import commit, sessionmaker
from app.core.errors import NotFound
from app.core.events import record_event
from app.core.pagination import PageParams, apply_sort, paginate_rows
from app.files.retrieval import retrieve
from app.llm.engine import TurnDone, TurnEvent, TurnStats, preview, run_turn
from app.llm.errors import ProviderError
from app.llm.providers import ModelRoute, build_provider
from app.llm.service import llm_service
from app.llm.types import Citation, Message, ToolCall, ToolResult, ToolSpec
from app.mcp.toolset import open_toolset
from app.models import ChatChannel, ChatMessage, ProjectChat

logger = logging.getLogger("bazaar.chat")

TITLE_CHARS = 80
CITATION_CHARS = 2000
_SORTABLE = {"updatedAt": ProjectChat.updated_at, "createdAt": ProjectChat.created_at}


@dataclass(frozen=True)
class ChatProject:
    """What a turn needs of the project (the projects or widgets domain looks it up)."""

    id: UUID
    prompt: str
    llm: str | None
    mcp_servers: Sequence[str]


@dataclass(frozen=True)
class Asker:
    channel: ChatChannel
    user_id: UUID | None = None
    widget_id: UUID | None = None
    visitor_id: str | None = None


@dataclass
class PreparedTurn:
    project: ChatProject
    asker: Asker
    chat_id: UUID
    user_message_id: UUID
    route: ModelRoute
    messages: list[Message]
    knowledge: list[Citation]
    settings: Settings
    started: float


@dataclass(frozen=True)
class AnswerSaved:
    message_id: UUID
    content: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class AnswerFailed:
    status: int
    code: str
    message: str
    message_id: UUID | None
    details: dict[str, Any] = field(default_factory=dict)


ChatEvent = TurnEvent | AnswerSaved | AnswerFailed


class _NoTools:
    def __init__(self) -> None:
        self.tools: list[ToolSpec] = []

    async def call(self, call: ToolCall) -> ToolResult:
        return ToolResult(call_id=call.id, name=call.name, content="This project has no tools", is_error=True)


def citation_out(citation: Citation) -> dict[str, Any]:
    return {
        "chunkId": citation.chunk_id,
        "fileId": citation.file_id,
        "fileName": citation.file_name,
        "ordinal": citation.ordinal,
        "score": citation.score,
        "text": preview(citation.text, CITATION_CHARS),
    }


def system_prompt(prompt: str, knowledge: Sequence[Citation]) -> str:
    parts = [prompt.strip()] if prompt.strip() else []
    if knowledge:
        excerpts = "\n\n".join(
            f"[{n}] {c.file_name} (part {c.ordinal}):\n{c.text}" for n, c in enumerate(knowledge, start=1)
        )
        parts.append(
            "Knowledge base excerpts. Answer from them when they are relevant and cite them as [n]:\n\n"
            + excerpts
        )
    return "\n\n".join(parts)


def title_of(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1] + "…"


def usage_out(route: ModelRoute, stats: TurnStats) -> dict[str, Any]:
    cost = route.cost_usd(stats.input_tokens, stats.output_tokens)
    return {
        "inputTokens": stats.input_tokens,
        "outputTokens": stats.output_tokens,
        "costUsd": None if cost is None else str(cost),
        "model": route.key,
        "latencyMs": stats.latency_ms,
        "firstTokenMs": stats.first_token_ms,
    }


class ChatService:
    # --- a turn -----------------------------------------------------------------------------

    async def prepare_turn(
        self,
        db: AsyncSession,
        settings: Settings,
        project: ChatProject,
        asker: Asker,
        text: str,
        *,
        conversation_id: UUID | None,
        started: float | None = None,
    ) -> PreparedTurn:
        """Store the question (committed by the caller's request) and build the prompt."""
        started = time.perf_counter() if started is None else started
        route = await llm_service.route(db, settings, project.llm)
        if conversation_id is not None:
            chat = await chat_repository.chat(
                db,
                project.id,
                conversation_id,
                channel=asker.channel,
                widget_id=asker.widget_id,
                visitor_id=asker.visitor_id,
                for_update=True,
            )
            if chat is None:
                raise NotFound("Conversation not found", code="chat_not_found")
            chat.updated_at = datetime.now(UTC)
            history = await chat_repository.history(db, chat.id, settings.chat_history_messages)
        else:
            chat = ProjectChat(
                project_id=project.id,
                user_id=asker.user_id,
                channel=asker.channel,
                widget_id=asker.widget_id,
                visitor_id=asker.visitor_id,
                title=title_of(text),
            )
            db.add(chat)
            await db.flush()
            history = []
        question = ChatMessage(chat_id=chat.id, role="user", content=text, metadata_={})
        db.add(question)
        await db.flush()
        knowledge = await retrieve(db, project.id, text, limit=settings.retrieval_top_k)
        system = system_prompt(project.prompt, knowledge)
        messages = [Message(role="system", content=system)] if system else []
        messages += [Message(role=m.role, content=m.content) for m in history]  # type: ignore[arg-type]
        messages.append(Message(role="user", content=text))
        return PreparedTurn(
            project=project,
            asker=asker,
            chat_id=chat.id,
            user_message_id=question.id,
            route=route,
            messages=messages,
            knowledge=knowledge,
            settings=settings,
            started=started,
        )

    async def answer(self, turn: PreparedTurn) -> AsyncGenerator[ChatEvent]:
        """The engine's events, then ``AnswerSaved`` or ``AnswerFailed``. Never raises for a
        provider failure: the failure is stored and reported as the last event."""
        provider = build_provider(turn.route, turn.settings)
        done: TurnDone | None = None
        try:
            async with AsyncExitStack() as stack:
                tools: Any = _NoTools()
                if turn.project.mcp_servers:
                    # The toolset reads its clients when it opens: the connection goes back to
                    # the pool before the (possibly long) turn runs.
                    async with sessionmaker()() as db:
                        tools = await stack.enter_async_context(
                            open_toolset(db, turn.settings, list(turn.project.mcp_servers))
                        )
                async for event in run_turn(
                    provider,
                    turn.route,
                    turn.messages,
                    tools,
                    knowledge=turn.knowledge,
                    max_tool_steps=turn.settings.chat_max_tool_steps,
                    started=turn.started,
                ):
                    if isinstance(event, TurnDone):
                        done = event
                    else:
                        yield event
        except ProviderError as exc:
            yield await self._save_failure(turn, exc.status_code, exc.code, exc.message, exc.details)
            return
        except Exception:
            logger.exception("chat turn failed", extra={"chatId": str(turn.chat_id)})
            yield await self._save_failure(turn, 500, "chat_failed", "The answer failed; try again", {})
            return
        assert done is not None
        yield await self._save_answer(turn, done)

    async def _save_answer(self, turn: PreparedTurn, done: TurnDone) -> AnswerSaved | AnswerFailed:
        route, stats = turn.route, done.stats
        usage = usage_out(route, stats)
        metadata: dict[str, Any] = {
            "citations": [citation_out(c) for c in turn.knowledge],
            "toolCalls": stats.tool_calls,
            "usage": usage,
            "model": route.key,
            "provider": route.provider_name,
        }
        if stats.stopped_at_step_limit:
            metadata["stoppedAtToolStepLimit"] = True
        async with sessionmaker()() as db:
            if not await self._lock_chat(db, turn.chat_id):
                return AnswerFailed(404, "chat_not_found", "The conversation was deleted meanwhile", None)
            message = ChatMessage(
                chat_id=turn.chat_id, role="assistant", content=done.content, metadata_=metadata
            )
            db.add(message)
            await db.flush()
            asker = turn.asker
            await record_event(
                db,
                "chat.message",
                actor_id=asker.user_id,
                subject_id=turn.chat_id,
                payload={
                    "projectId": str(turn.project.id),
                    "chatId": str(turn.chat_id),
                    "messageId": str(message.id),
                    "channel": str(asker.channel),
                    "widgetId": None if asker.widget_id is None else str(asker.widget_id),
                    "visitorId": asker.visitor_id,
                    "userId": None if asker.user_id is None else str(asker.user_id),
                    "provider": route.provider_name,
                    "model": route.key,
                    "inputTokens": stats.input_tokens,
                    "outputTokens": stats.output_tokens,
                    "latencyMs": stats.latency_ms,
                    "firstTokenMs": stats.first_token_ms,
                    "toolCalls": len(stats.tool_calls),
                    "costUsd": usage["costUsd"],
                },
            )
            await commit(db)
        return AnswerSaved(message_id=message.id, content=done.content, metadata=metadata)

    async def _save_failure(
        self, turn: PreparedTurn, status: int, code: str, message: str, details: dict[str, Any]
    ) -> AnswerFailed:
        async with sessionmaker()() as db:
            if not await self._lock_chat(db, turn.chat_id):
                return AnswerFailed(status, code, message, None, details)
            failed = ChatMessage(
                chat_id=turn.chat_id,
                role="assistant",
                content="",
                metadata_={
                    "error": {"code": code, "message": message},
                    "model": turn.route.key,
                    "provider": turn.route.provider_name,
                },
            )
            db.add(failed)
            await commit(db)
        return AnswerFailed(status, code, message, failed.id, details)

    @staticmethod
    async def _lock_chat(db: AsyncSession, chat_id: UUID) -> bool:
        """Lock the conversation and touch it; False when it was deleted during the answer."""
        chat = await chat_repository.lock(db, chat_id)
        if chat is None:
            return False
        chat.updated_at = datetime.now(UTC)
        return True

    # --- conversations ----------------------------------------------------------------------

    async def list_chats(
        self, db: AsyncSession, project_id: UUID, params: PageParams, *, channel: ChatChannel
    ) -> tuple[list[ChatSummary], int]:
        stmt = apply_sort(
            chat_repository.summaries(project_id, channel),
            params.sort,
            _SORTABLE,
            "-updatedAt",
            ProjectChat.id,
        )
        rows, total = await paginate_rows(db, stmt, params)
        return [
            ChatSummary(
                id=chat.id,
                project_id=chat.project_id,
                title=chat.title,
                channel=chat.channel,
                message_count=int(count),
                created_at=chat.created_at,
                updated_at=chat.updated_at,
            )
            for chat, count in rows
        ], total

    async def get_chat(
        self, db: AsyncSession, project_id: UUID, chat_id: UUID, *, channel: ChatChannel
    ) -> ProjectChatOut:
        chat = await chat_repository.chat(db, project_id, chat_id, channel=channel)
        if chat is None:
            raise NotFound("Conversation not found", code="chat_not_found")
        messages = await chat_repository.messages(db, chat.id)
        return ProjectChatOut(
            id=chat.id,
            project_id=chat.project_id,
            title=chat.title,
            channel=chat.channel,
            user_id=chat.user_id,
            messages=[
                ChatMessageOut(
                    id=m.id,
                    role=m.role,
                    content=m.content,
                    metadata=m.metadata_,
                    created_at=m.created_at,
                )
                for m in messages
            ],
            created_at=chat.created_at,
            updated_at=chat.updated_at,
        )

    async def delete_chat(
        self, db: AsyncSession, project_id: UUID, chat_id: UUID, *, channel: ChatChannel
    ) -> None:
        chat = await chat_repository.chat(db, project_id, chat_id, channel=channel, for_update=True)
        if chat is None:
            raise NotFound("Conversation not found", code="chat_not_found")
        await chat_repository.delete_chat(db, chat.id)


chat_service = ChatService()
