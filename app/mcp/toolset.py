"""The tools of a project's MCP clients for one chat turn.

Usage::

    clients = await toolset_clients(db, settings, project.mcp_servers)  # reads the database
    ...                                   # commit / close the session: connecting takes a while
    async with connect_toolset(settings, clients) as toolset:
        specs = toolset.tools             # list[ToolSpec], names unique across clients
        result = await toolset.call(call) # ToolResult; errors and timeouts come back as
                                          # is_error results, never raised

``open_toolset(db, settings, client_ids)`` does both at once, for callers that may keep their
session (and its connection) while the servers connect.

Each client's session lives in a task of its own that enters and leaves the SDK's context
managers (anyio cancel scopes must be exited by the task that entered them), so the clients are
connected concurrently and one that hangs or dies does not take the others down. Enter and
leave ``open_toolset`` in one task too.
"""

import hashlib
import logging
import math
import re
import time
import unicodedata
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import orjson
from mcp import Client
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.llm.types import ToolCall, ToolResult, ToolSpec
from app.mcp.connect import ConnectionSpec, connect, describe, list_tools
from app.mcp.service import mcp_service

logger = logging.getLogger("bazaar.mcp.toolset")

MAX_NAME = 64  # OpenAI and Anthropic function names: ^[a-zA-Z0-9_-]{1,64}$
SLUG_CHARS = 20
_INVALID = re.compile(r"[^a-zA-Z0-9_-]+")


def slug(name: str) -> str:
    """A client's name as a short function-name prefix: ``Orders API`` -> ``orders-api``."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = _INVALID.sub("-", ascii_name.strip().lower()).strip("-_")
    return text[:SLUG_CHARS].rstrip("-_") or "mcp"


def tool_name(client_slug: str, tool: str, taken: set[str]) -> str:
    """``<client-slug>__<tool>``, valid as a function name and not in ``taken``."""
    base = f"{client_slug}__{_INVALID.sub('_', tool) or 'tool'}"
    if len(base) > MAX_NAME:  # keep it recognisable and distinct: cut, then a short hash
        digest = hashlib.sha256(tool.encode()).hexdigest()[:8]
        base = f"{base[: MAX_NAME - 9]}_{digest}"
    name, n = base, 2
    while name in taken:
        suffix = f"_{n}"
        name, n = base[: MAX_NAME - len(suffix)] + suffix, n + 1
    return name


@dataclass(frozen=True)
class _Route:
    client: Client
    tool: str
    spec: ConnectionSpec


def _text_of(result: Any) -> str:
    """The text blocks of a tool result, joined; other blocks are named, not inlined."""
    parts: list[str] = []
    for block in result.content or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind in ("image", "audio"):
            parts.append(f"[{kind}: {getattr(block, 'mime_type', '') or 'binary'}]")
        elif kind == "resource_link":
            parts.append(f"[resource: {getattr(block, 'uri', '')}]")
        elif kind == "resource":
            resource = getattr(block, "resource", None)
            text = getattr(resource, "text", None)
            parts.append(text if isinstance(text, str) else f"[resource: {getattr(resource, 'uri', '')}]")
    if not parts and result.structured_content is not None:
        parts.append(orjson.dumps(result.structured_content).decode())
    return "\n".join(parts)


def cap(text: str, limit: int) -> str:
    """``text`` without NUL characters (Postgres stores none, and a tool's output is untrusted)
    cut to at most ``limit`` characters, saying so when it was cut."""
    text = text.replace("\x00", "")
    if len(text) <= limit:
        return text
    note = f"\n[cut: the tool returned {len(text)} characters; the first {{shown}} are shown]"
    shown = max(0, limit - len(note.format(shown=limit)))
    return text[:shown] + note.format(shown=shown)


class Toolset:
    """The tools of the connected clients, and a way to call them."""

    tools: list[ToolSpec]

    def __init__(self, settings: Settings | None = None) -> None:
        self.tools = []
        self._settings = settings
        self._routes: dict[str, _Route] = {}

    def _add(
        self, spec: ConnectionSpec, client: Client, listed: Sequence[Any], taken_slugs: set[str]
    ) -> None:
        base = slug(spec.name)
        client_slug, n = base, 2
        while client_slug in taken_slugs:
            client_slug, n = f"{base}-{n}", n + 1
        taken_slugs.add(client_slug)
        for tool in listed:
            name = tool_name(client_slug, tool.name, set(self._routes))
            schema = tool.input_schema if isinstance(tool.input_schema, dict) else {}
            self._routes[name] = _Route(client=client, tool=tool.name, spec=spec)
            self.tools.append(
                ToolSpec(
                    name=name,
                    description=f"[{spec.name}] {tool.description or tool.name}",
                    parameters={"type": "object", "properties": {}, **schema},
                )
            )

    async def call(self, call: ToolCall) -> ToolResult:
        started = time.perf_counter()

        def result(content: str, *, is_error: bool) -> ToolResult:
            limit = self._settings.mcp_result_max_chars if self._settings else len(content)
            return ToolResult(
                call_id=call.id,
                name=call.name,
                content=cap(content, limit),
                is_error=is_error,
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
            )

        route = self._routes.get(call.name)
        if route is None or self._settings is None:
            return result(f"Unknown tool: {call.name}", is_error=True)
        timeout = self._settings.mcp_call_timeout_seconds
        try:
            with anyio.fail_after(timeout):
                answer = await route.client.call_tool(
                    route.tool, call.arguments, read_timeout_seconds=timeout
                )
        except TimeoutError:
            logger.warning("MCP tool timed out", extra={"tool": call.name, "timeoutSeconds": timeout})
            return result(f"The tool did not answer within {timeout:g} s", is_error=True)
        except Exception as exc:
            error = route.spec.redact(describe(exc))
            logger.warning("MCP tool call failed", extra={"tool": call.name, "error": error})
            return result(f"The tool failed: {error}", is_error=True)
        return result(_text_of(answer), is_error=bool(answer.is_error))


@dataclass
class _Session:
    spec: ConnectionSpec
    client: Client | None = None
    tools: Sequence[Any] = ()


async def _hold_session(
    session: _Session, settings: Settings, ready: anyio.Event, closing: anyio.Event
) -> None:
    """Connect and list the tools (within the timeout), then keep the session open until
    ``closing``; never raises, a failure is logged and the client skipped."""
    timeout = settings.mcp_call_timeout_seconds
    with anyio.CancelScope(deadline=anyio.current_time() + timeout) as scope:
        try:
            async with AsyncExitStack() as stack:
                connected = await connect(stack, session.spec, settings)
                session.tools = await list_tools(connected.client)
                session.client = connected.client
                scope.deadline = math.inf
                ready.set()
                await closing.wait()
                scope.deadline = anyio.current_time() + timeout  # closing is bounded too
        except Exception as exc:
            if session.client is None:
                logger.warning(
                    "MCP client skipped: cannot connect",
                    extra={
                        "clientId": str(session.spec.client_id),
                        "error": session.spec.redact(describe(exc)),
                    },
                )
    if scope.cancelled_caught and session.client is None:
        logger.warning(
            "MCP client skipped: no answer in time",
            extra={"clientId": str(session.spec.client_id), "timeoutSeconds": timeout},
        )
    ready.set()


ToolClient = ConnectionSpec


async def toolset_clients(
    db: AsyncSession, settings: Settings, client_ids: Sequence[str]
) -> list[ToolClient]:
    """How to reach the active clients among ``client_ids`` (the others are skipped and logged),
    read from the database without connecting to any."""
    return await mcp_service.usable_specs(db, settings, client_ids)


@asynccontextmanager
async def open_toolset(
    db: AsyncSession, settings: Settings, client_ids: Sequence[str]
) -> AsyncIterator[Toolset]:
    """``toolset_clients`` then ``connect_toolset``; ``db`` stays checked out meanwhile."""
    clients = await toolset_clients(db, settings, client_ids)
    async with connect_toolset(settings, clients) as toolset:
        yield toolset


@asynccontextmanager
async def connect_toolset(settings: Settings, specs: Sequence[ToolClient]) -> AsyncIterator[Toolset]:
    """Connects to the clients (unreachable ones are skipped and logged) and closes every
    session on exit."""
    toolset = Toolset(settings)
    if not specs:
        yield toolset
        return
    sessions = [_Session(spec) for spec in specs]
    closing = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            readies = []
            for session in sessions:
                ready = anyio.Event()
                readies.append(ready)
                tg.start_soon(_hold_session, session, settings, ready, closing)
            try:
                for ready in readies:
                    await ready.wait()
                slugs: set[str] = set()
                for session in sessions:
                    if session.client is not None:
                        toolset._add(session.spec, session.client, session.tools, slugs)
                yield toolset
            finally:
                closing.set()
    except BaseExceptionGroup as group:
        # The sessions never raise, so the group holds what the caller's block raised: give it
        # back as it was (an ``except ProviderError`` around the block must still match).
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
