"""Project conversations: a user turn is stored, answered by the project's LLM (with its
knowledge and MCP tools) and the answer stored with its usage.

A turn has two phases, so the question survives whatever happens to the answer:

1. ``prepare_turn`` runs in the request's session: it resolves the model and the MCP clients,
   finds or opens the conversation, stores the user's message and retrieves the knowledge. The
   request's one commit makes all that durable before any LLM or MCP server is called.
2. ``answer_after_commit`` answers once that commit is done, in a task of its own: the MCP
   servers are connected (no database connection is held meanwhile), the engine runs, then the
   assistant message is written with a session of its own, with the ``chat.message`` event.
   Responses only relay the task's events (``AnswerRun``), so a client that goes away does not
   keep the answer from being stored and metered.

A failed answer (provider error, timeout, the answer that cannot be stored) is stored as an
assistant message with empty content and ``metadata.error`` = {code, message}; it is never sent
to the model as history and records no ``chat.message`` event. A turn cancelled under way (the
server stopping) stores what was said so far with ``metadata.interrupted`` and its usage (the
LLM call under way estimated), and records ``chat.message``.

One turn at a time per conversation: while its last message is a question younger than a turn
can last (``turn_budget_seconds``), a new question is refused with 409 ``chat_busy`` (the row
lock taken by ``prepare_turn`` makes the check race-free). An older unanswered question means
the process answering it died, and the conversation goes on.

Both channels use these functions: the studio (``channel=studio``, a signed-in builder or admin)
and the embeddable widget (``channel=widget`` with ``widget_id``, ``visitor_id`` and the verified
``customer_id`` or None, no user). A widget conversation belongs to its visitor *and* customer:
an anonymous session cannot continue a verified customer's conversation, nor another customer's
with the same visitor id.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from app.chat.repository import CUSTOMER_USAGE_COLUMNS, chat_repository
from app.chat.schemas import ChatMessageOut, ChatSummary, ProjectChatOut
from app.core.config import Settings
from app.core.db import after_commit, commit, sessionmaker
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.events import record_event
from app.core.pagination import PageParams, apply_sort, paginate_rows
from app.files.retrieval import retrieve
from app.llm.engine import Tools, TurnDone, TurnEvent, TurnStats, preview, run_turn
from app.llm.errors import ProviderError
from app.llm.providers import ModelRoute, build_provider
from app.llm.service import llm_service
from app.llm.types import Citation, Message, TextDelta, ToolCall, ToolResult, ToolSpec
from app.mcp.toolset import ToolClient, connect_toolset, toolset_clients
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
    # The host site's user, when the widget session carries a verified identity.
    customer_id: str | None = None


@dataclass
class PreparedTurn:
    project: ChatProject
    asker: Asker
    chat_id: UUID
    user_message_id: UUID
    route: ModelRoute
    messages: list[Message]
    knowledge: list[Citation]
    tool_clients: list[ToolClient]
    settings: Settings
    started: float


@dataclass(frozen=True)
class CustomerUsage:
    """What one verified customer of a widget asked and cost, from the stored messages."""

    customer_id: str
    messages: int  # questions asked
    answers: int  # answers stored without an error
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal  # of the answers whose model has a price
    unpriced_answers: int
    conversations: int
    first_seen_at: datetime
    last_seen_at: datetime


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
Answer = Callable[[PreparedTurn, Callable[[ChatEvent], None]], Awaitable[AnswerSaved | AnswerFailed]]

# Answers under way: the event loop keeps only weak references to tasks.
_RUNNING: set[asyncio.Task[None]] = set()


class AnswerRun:
    """A turn's answer, produced by a task of its own (once ``start`` is called) so that it is
    stored and metered whatever happens to the responses relaying it: ``events`` or
    ``outcome`` may be abandoned (a client gone) or cancelled without touching the answer."""

    def __init__(self, turn: PreparedTurn, answer: Answer) -> None:
        self._turn = turn
        self._answer = answer
        self._events: asyncio.Queue[ChatEvent] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name=f"chat-answer-{self._turn.chat_id}")
            _RUNNING.add(self.task)
            self.task.add_done_callback(_RUNNING.discard)

    async def _run(self) -> None:
        final: AnswerSaved | AnswerFailed = AnswerFailed(
            503, "chat_interrupted", "The answer was interrupted; try again", None
        )
        try:
            final = await self._answer(self._turn, self._events.put_nowait)
        except Exception:
            logger.exception("chat turn failed", extra={"chatId": str(self._turn.chat_id)})
            final = AnswerFailed(500, "chat_failed", "The answer failed; try again", None)
        finally:
            self._events.put_nowait(final)

    async def events(self) -> AsyncIterator[ChatEvent]:
        """The engine's events as they come, then ``AnswerSaved`` or ``AnswerFailed``."""
        if self.task is None:
            raise RuntimeError("the answer was never started (was the question committed?)")
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, AnswerSaved | AnswerFailed):
                return

    async def outcome(self) -> AnswerSaved | AnswerFailed:
        async for event in self.events():
            if isinstance(event, AnswerSaved | AnswerFailed):
                return event
        raise AssertionError("an answer always ends with AnswerSaved or AnswerFailed")


class _NoTools:
    def __init__(self) -> None:
        self.tools: list[ToolSpec] = []

    async def call(self, call: ToolCall) -> ToolResult:
        return ToolResult(call_id=call.id, name=call.name, content="This project has no tools", is_error=True)


def _sole(exc: BaseException) -> BaseException:
    """The one exception inside (nested) single-member groups: task groups wrap what their
    block raised."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def without_nul(value: Any) -> Any:
    """``value`` with every NUL character removed from its strings (keys too): Postgres text
    and JSONB refuse them, and model and tool output is untrusted."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(v) for v in value]
    return value


def turn_budget_seconds(settings: Settings) -> float:
    """About the longest a turn lasts: connecting the MCP servers, then for each permitted LLM
    call its deadline and a tool call. An unanswered question older than this is abandoned."""
    calls = settings.chat_max_tool_steps + 1
    return settings.mcp_call_timeout_seconds + calls * (
        settings.llm_call_deadline_seconds + settings.mcp_call_timeout_seconds
    )


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
        tool_clients = await toolset_clients(db, settings, project.mcp_servers) if project.mcp_servers else []
        if conversation_id is not None:
            chat = await chat_repository.chat(
                db,
                project.id,
                conversation_id,
                channel=asker.channel,
                widget_id=asker.widget_id,
                visitor_id=asker.visitor_id,
                customer_id=asker.customer_id,
                for_update=True,
            )
            if chat is None:
                raise NotFound("Conversation not found", code="chat_not_found")
            await self._refuse_while_answering(db, settings, chat.id)
            chat.updated_at = datetime.now(UTC)
            history = await chat_repository.history(db, chat.id, settings.chat_history_messages)
        else:
            chat = ProjectChat(
                project_id=project.id,
                user_id=asker.user_id,
                channel=asker.channel,
                widget_id=asker.widget_id,
                visitor_id=asker.visitor_id,
                customer_id=asker.customer_id,
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
            tool_clients=tool_clients,
            settings=settings,
            started=started,
        )

    @staticmethod
    async def _refuse_while_answering(db: AsyncSession, settings: Settings, chat_id: UUID) -> None:
        """409 ``chat_busy`` while the conversation's last question is being answered (the caller
        holds the conversation's row lock, so two questions cannot both pass)."""
        last = await chat_repository.last_message(db, chat_id)
        if last is None or last.role != "user":
            return
        if (datetime.now(UTC) - last.created_at).total_seconds() < turn_budget_seconds(settings):
            raise Conflict(
                "The previous question of this conversation is still being answered; ask again "
                "once its answer is in",
                code="chat_busy",
                details={"conversationId": str(chat_id)},
            )

    @staticmethod
    async def drain(timeout: float) -> None:
        """Let answers under way finish (stored and metered) before the process stops."""
        if _RUNNING:
            await asyncio.wait(set(_RUNNING), timeout=timeout)

    def answer_after_commit(self, db: AsyncSession, turn: PreparedTurn) -> AnswerRun:
        """The answer to ``turn``, started once ``db`` (that stored the question) commits, even
        if the response is never sent."""
        run = AnswerRun(turn, self._answer)
        after_commit(db, run.start)
        return run

    async def start_answer(self, turn: PreparedTurn) -> AnswerRun:
        """The answer to ``turn``, started now (its question must be committed already)."""
        run = AnswerRun(turn, self._answer)
        await run.start()
        return run

    async def _answer(
        self, turn: PreparedTurn, emit: Callable[[ChatEvent], None]
    ) -> AnswerSaved | AnswerFailed:
        """Run the turn, passing its events to ``emit``; store the answer or the failure."""
        provider = build_provider(turn.route, turn.settings)
        stats = TurnStats(started=turn.started)
        said: list[str] = []
        done: TurnDone | None = None
        try:
            async with AsyncExitStack() as stack:
                tools: Tools = _NoTools()
                if turn.tool_clients:
                    tools = await stack.enter_async_context(connect_toolset(turn.settings, turn.tool_clients))
                async for event in run_turn(
                    provider,
                    turn.route,
                    turn.messages,
                    tools,
                    knowledge=turn.knowledge,
                    max_tool_steps=turn.settings.chat_max_tool_steps,
                    started=turn.started,
                    stats=stats,
                ):
                    if isinstance(event, TurnDone):
                        done = event
                        continue
                    if isinstance(event, TextDelta):
                        said.append(event.text)
                    emit(event)
        except BaseException as exc:
            cause = _sole(exc)
            if isinstance(cause, ProviderError):
                return await self._save_failure(
                    turn, cause.status_code, cause.code, cause.message, cause.details
                )
            if isinstance(cause, asyncio.CancelledError):
                # The server is stopping: keep what was said, and bill it.
                stats.settle_interrupted()
                await asyncio.shield(self._save_answer(turn, "".join(said), stats, interrupted=True))
                raise
            if not isinstance(cause, Exception):
                raise
            logger.exception("chat turn failed", extra={"chatId": str(turn.chat_id)})
            return await self._save_failure(turn, 500, "chat_failed", "The answer failed; try again", {})
        assert done is not None
        return await self._save_answer(turn, done.content, done.stats)

    async def _save_answer(
        self, turn: PreparedTurn, content: str, stats: TurnStats, *, interrupted: bool = False
    ) -> AnswerSaved | AnswerFailed:
        try:
            return await self._store_answer(turn, without_nul(content), stats, interrupted=interrupted)
        except Exception:
            logger.exception("chat answer not stored", extra={"chatId": str(turn.chat_id)})
            return await self._save_failure(
                turn, 500, "chat_save_failed", "The answer could not be stored; try again", {}
            )

    async def _store_answer(
        self, turn: PreparedTurn, content: str, stats: TurnStats, *, interrupted: bool
    ) -> AnswerSaved | AnswerFailed:
        route = turn.route
        usage = usage_out(route, stats)
        metadata: dict[str, Any] = without_nul(
            {
                "citations": [citation_out(c) for c in turn.knowledge],
                "toolCalls": stats.tool_calls,
                "usage": usage,
                "model": route.key,
                "provider": route.provider_name,
            }
        )
        if stats.stopped_at_step_limit:
            metadata["stoppedAtToolStepLimit"] = True
        if interrupted:
            metadata["interrupted"] = True
        async with sessionmaker()() as db:
            if not await self._lock_chat(db, turn.chat_id):
                return AnswerFailed(404, "chat_not_found", "The conversation was deleted meanwhile", None)
            message = ChatMessage(chat_id=turn.chat_id, role="assistant", content=content, metadata_=metadata)
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
                    "customerId": asker.customer_id,
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
        return AnswerSaved(message_id=message.id, content=content, metadata=metadata)

    async def _save_failure(
        self, turn: PreparedTurn, status: int, code: str, message: str, details: dict[str, Any]
    ) -> AnswerFailed:
        """Store the failed answer; the failure is reported even when that fails too."""
        try:
            async with sessionmaker()() as db:
                if not await self._lock_chat(db, turn.chat_id):
                    return AnswerFailed(status, code, message, None, details)
                failed = ChatMessage(
                    chat_id=turn.chat_id,
                    role="assistant",
                    content="",
                    metadata_=without_nul(
                        {
                            "error": {"code": code, "message": message},
                            "model": turn.route.key,
                            "provider": turn.route.provider_name,
                        }
                    ),
                )
                db.add(failed)
                await commit(db)
        except Exception:
            logger.exception("failed chat answer not stored", extra={"chatId": str(turn.chat_id)})
            return AnswerFailed(status, code, message, None, details)
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

    async def widget_customers(
        self, db: AsyncSession, widget_id: UUID, start: datetime, end: datetime, params: PageParams
    ) -> tuple[list[CustomerUsage], int]:
        """Usage per verified customer of a widget, from its conversations' messages stored in
        ``[start, end)``: exact, server-side. Sort: any ``CustomerUsage`` field in camelCase
        (default ``-lastSeenAt``)."""
        key = params.sort or "-lastSeenAt"
        name = key.removeprefix("-")
        if name not in CUSTOMER_USAGE_COLUMNS:
            raise ValidationFailed(
                f"Cannot sort by {name!r}",
                code="invalid_sort",
                details={"allowed": sorted(CUSTOMER_USAGE_COLUMNS)},
            )
        stmt = chat_repository.customer_usage(
            widget_id, start, end, order_by=name, descending=key.startswith("-")
        )
        rows, total = await paginate_rows(db, stmt, params)
        usage = [dict(zip(CUSTOMER_USAGE_COLUMNS, row, strict=True)) for row in rows]
        return [
            CustomerUsage(
                customer_id=str(u["customerId"]),
                messages=int(u["messages"]),
                answers=int(u["answers"]),
                input_tokens=int(u["inputTokens"]),
                output_tokens=int(u["outputTokens"]),
                cost_usd=Decimal(u["costUsd"]),
                unpriced_answers=int(u["unpricedAnswers"]),
                conversations=int(u["conversations"]),
                first_seen_at=u["firstSeenAt"],
                last_seen_at=u["lastSeenAt"],
            )
            for u in usage
        ], total

    async def delete_chat(
        self, db: AsyncSession, project_id: UUID, chat_id: UUID, *, channel: ChatChannel
    ) -> None:
        chat = await chat_repository.chat(db, project_id, chat_id, channel=channel, for_update=True)
        if chat is None:
            raise NotFound("Conversation not found", code="chat_not_found")
        await chat_repository.delete_chat(db, chat.id)


chat_service = ChatService()
